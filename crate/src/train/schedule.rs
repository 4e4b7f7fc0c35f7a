//! Learning rate: linear warm-up (the paper's stabiliser for LoRA), then cosine or
//! polynomial decay to a floor.

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Decay {
    Cosine,
    /// `(1 - t)^power`
    Poly(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub decay: Decay,
    /// Final learning rate as a fraction of the peak.
    pub floor: f64,
}

impl Schedule {
    /// Learning rate of optimiser step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        let f = match self.decay {
            Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * t).cos()),
            Decay::Poly(p) => (1.0 - t).powf(p),
        };
        self.peak * (self.floor + (1.0 - self.floor) * f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_rises_linearly_then_decays_to_the_floor() {
        let s = Schedule {
            peak: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
            decay: Decay::Cosine,
            floor: 0.1,
        };
        assert!((s.lr(0) - 1e-4).abs() < 1e-12);
        assert!((s.lr(9) - 1e-3).abs() < 1e-12);
        assert!((s.lr(60) - 0.55e-3).abs() < 1e-9, "{}", s.lr(60));
        assert!((s.lr(110) - 1e-4).abs() < 1e-12);
        assert!((s.lr(500) - 1e-4).abs() < 1e-12);
        let p = Schedule {
            decay: Decay::Poly(1.0),
            floor: 0.0,
            ..s
        };
        assert!((p.lr(60) - 0.5e-3).abs() < 1e-12);
    }
}
