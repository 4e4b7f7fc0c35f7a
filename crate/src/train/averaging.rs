//! Polyak averaging: an exponential moving average of the weights along a run. Stages 9
//! and 10 gained by averaging two runs' final weights ("soups"); this averages one run's
//! weights over its last ~1 / (1 − decay) steps instead, at no extra training.

use burn::module::Param;
use burn::prelude::*;

use crate::model::common::{NamedParams, ParamRef};
use crate::model::Sam;
use crate::weights::WeightsError;

/// One averaged parameter, in the order `Sam::visit_named` visits them (buffers skipped).
#[derive(Clone)]
enum Slot {
    D1(Tensor<1>),
    D2(Tensor<2>),
    D4(Tensor<4>),
}

/// The running average of a model's trained weights.
#[derive(Clone)]
pub struct WeightAverage {
    decay: f64,
    updates: usize,
    slots: Vec<Slot>,
}

fn mix<const D: usize>(avg: &Tensor<D>, now: Tensor<D>, keep: f64) -> Tensor<D> {
    // Detached: a leaf, which a model's parameter must be (burn's autodiff).
    avg.clone()
        .mul_scalar(keep)
        .add(now.detach().mul_scalar(1.0 - keep))
        .detach()
}

impl WeightAverage {
    /// An average that starts at `sam`'s weights, as if `updates` steps had been averaged
    /// already (a resumed run continues its ramp).
    pub fn new(sam: &mut Sam, decay: f64, updates: usize) -> Result<Self, WeightsError> {
        let mut slots = Vec::new();
        sam.visit_named("", &mut |_, p| {
            match p {
                ParamRef::D1(p) => slots.push(Slot::D1(p.val().detach())),
                ParamRef::D2(p) | ParamRef::LinearWeight(p) | ParamRef::RelPos(p) => {
                    slots.push(Slot::D2(p.val().detach()))
                }
                ParamRef::D4(p) | ParamRef::PosEmbed(p) => slots.push(Slot::D4(p.val().detach())),
                ParamRef::Buffer2(_) => {}
            }
            Ok(())
        })?;
        Ok(Self {
            decay,
            updates,
            slots,
        })
    }

    /// The share of the past kept at this update: `decay`, ramped up over the first steps
    /// (`(1 + n) / (10 + n)`) so that a run from scratch is not held at its random start.
    fn keep(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// Folds `sam`'s current weights into the average (after each optimiser step).
    pub fn update(&mut self, sam: &mut Sam) -> Result<(), WeightsError> {
        let keep = self.keep();
        zip(sam, &mut self.slots, |pair| match pair {
            Pair::D1(p, a) => *a = mix(a, p.val(), keep),
            Pair::D2(p, a) => *a = mix(a, p.val(), keep),
            Pair::D4(p, a) => *a = mix(a, p.val(), keep),
        })?;
        self.updates += 1;
        Ok(())
    }

    /// A copy of `sam` (the model being averaged) holding the averaged weights.
    pub fn model(&self, sam: &Sam) -> Result<Sam, WeightsError> {
        let mut out = sam.clone();
        // A copy of handles, not of data: burn's tensors share their buffers.
        let mut slots = self.slots.clone();
        zip(&mut out, &mut slots, |pair| match pair {
            Pair::D1(p, a) => *p = Param::from_tensor(a.clone()),
            Pair::D2(p, a) => *p = Param::from_tensor(a.clone()),
            Pair::D4(p, a) => *p = Param::from_tensor(a.clone()),
        })?;
        Ok(out)
    }
}

/// A parameter and its slot, of one kind.
enum Pair<'a, 'b> {
    D1(&'a mut Param<Tensor<1>>, &'b mut Tensor<1>),
    D2(&'a mut Param<Tensor<2>>, &'b mut Tensor<2>),
    D4(&'a mut Param<Tensor<4>>, &'b mut Tensor<4>),
}

/// Calls `f` on each of `sam`'s parameters (buffers skipped) with its slot, in order; fails
/// where the two differ in kind, shape or count.
fn zip(
    sam: &mut Sam,
    slots: &mut [Slot],
    mut f: impl FnMut(Pair<'_, '_>),
) -> Result<(), WeightsError> {
    let mut slots = slots.iter_mut();
    sam.visit_named("", &mut |key, p| {
        let slot = match p {
            ParamRef::Buffer2(_) => return Ok(()),
            _ => slots.next(),
        };
        match (p, slot) {
            (ParamRef::D1(p), Some(Slot::D1(a))) if a.dims() == p.dims() => f(Pair::D1(p, a)),
            (
                ParamRef::D2(p) | ParamRef::LinearWeight(p) | ParamRef::RelPos(p),
                Some(Slot::D2(a)),
            ) if a.dims() == p.dims() => f(Pair::D2(p, a)),
            (ParamRef::D4(p) | ParamRef::PosEmbed(p), Some(Slot::D4(a)))
                if a.dims() == p.dims() =>
            {
                f(Pair::D4(p, a))
            }
            _ => return Err(out_of_step(key)),
        }
        Ok(())
    })?;
    match slots.next() {
        Some(_) => Err(out_of_step("(end)")),
        None => Ok(()),
    }
}

fn out_of_step(key: &str) -> WeightsError {
    WeightsError::NotSam(format!(
        "the weight average does not match the model at `{key}`"
    ))
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::model::io::checkpoint::state_dict;
    use crate::model::Geometry;

    fn geometry() -> Geometry {
        Geometry {
            embed_dim: 16,
            depth: 2,
            num_heads: 2,
            global_attn_indexes: vec![1],
            image_size: 32,
            patch_size: 8,
            window_size: 2,
        }
    }

    fn flat(sam: &Sam) -> Vec<(String, Vec<f32>)> {
        pollster::block_on(state_dict(sam))
            .unwrap()
            .iter()
            .map(|(k, t)| (k.clone(), t.data.clone()))
            .collect()
    }

    /// After updates with models A, B, C the average is the recurrence written out by
    /// hand on every parameter (keep k_n = min(decay, (1 + n) / (10 + n))), and buffers
    /// are the model's own.
    #[test]
    fn the_average_follows_the_recurrence_on_every_weight() {
        let device = crate::backend::cpu();
        let g = geometry();
        let mut models: Vec<Sam> = (0..4).map(|_| g.config().init(&device)).collect();
        let decay = 0.5;
        let mut avg = WeightAverage::new(&mut models[0], decay, 0).unwrap();
        for m in models.iter_mut().skip(1) {
            avg.update(m).unwrap();
        }
        let got = flat(&avg.model(&models[3]).unwrap());
        let w: Vec<_> = models.iter().map(flat).collect();
        let mut buffers = Vec::new();
        models[0]
            .visit_named("", &mut |key, p| {
                if matches!(p, ParamRef::Buffer2(_)) {
                    buffers.push(key.to_string());
                }
                Ok(())
            })
            .unwrap();
        assert!(!buffers.is_empty(), "no buffer to check");
        let keeps = [1.0f64 / 10.0, 2.0 / 11.0, 3.0 / 12.0].map(|k| k.min(decay));
        let mut checked = 0;
        for (i, (key, vals)) in got.iter().enumerate() {
            let mut expect: Vec<f64> = w[0][i].1.iter().map(|v| *v as f64).collect();
            for (n, k) in keeps.iter().enumerate() {
                for (e, v) in expect.iter_mut().zip(&w[n + 1][i].1) {
                    *e = *e * k + *v as f64 * (1.0 - k);
                }
            }
            let buffer = buffers.contains(key);
            for (j, (g, e)) in vals.iter().zip(&expect).enumerate() {
                let want = if buffer { w[3][i].1[j] as f64 } else { *e };
                assert!(
                    (*g as f64 - want).abs() <= 1e-6,
                    "{key}[{j}]: {g} against {want}"
                );
            }
            checked += usize::from(!buffer);
        }
        assert!(checked > 50, "only {checked} averaged tensors checked");
    }

    /// A model of another structure is refused, not averaged out of step.
    #[test]
    fn a_model_of_another_structure_is_refused() {
        let device = crate::backend::cpu();
        let g = geometry();
        let mut a = g.config().init(&device);
        let mut b = Geometry {
            depth: 1,
            global_attn_indexes: vec![0],
            ..g
        }
        .config()
        .init(&device);
        let mut avg = WeightAverage::new(&mut a, 0.9, 0).unwrap();
        assert!(avg.update(&mut b).is_err());
    }
}
