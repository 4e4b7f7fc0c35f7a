//! The training curve as a PNG: loss per step (grey), its moving average (blue) and the
//! learning rate (orange, own scale), on a light grid, with each axis' top value written in a
//! built-in 3 × 5 pixel font (no system font is needed, so it draws the same everywhere).

use crate::data::montage::encode_png;
use crate::data::Result;

const W: usize = 800;
const H: usize = 400;
const PAD: usize = 30;
/// Text is drawn at this many pixels per font pixel.
const SCALE: usize = 2;

const BLACK: [u8; 3] = [0, 0, 0];
const GREY: [u8; 3] = [170, 170, 170];
const BLUE: [u8; 3] = [30, 80, 200];
const ORANGE: [u8; 3] = [240, 150, 40];

/// `points`: (step, loss, lr).
pub fn curve_png(points: &[(usize, f32, f64)]) -> Result<Vec<u8>> {
    encode_png(W, H, &draw(points).rgb)
}

fn draw(points: &[(usize, f32, f64)]) -> Canvas {
    let mut c = Canvas::new();
    let (x0, x1, y0, y1) = (PAD, W - PAD, PAD, H - PAD);
    for i in 0..=10 {
        let x = x0 + (x1 - x0) * i / 10;
        let y = y0 + (y1 - y0) * i / 10;
        c.line((x, y0), (x, y1), [225, 225, 225]);
        c.line((x0, y), (x1, y), [225, 225, 225]);
    }
    c.line((x0, y1), (x1, y1), BLACK);
    c.line((x0, y0), (x0, y1), BLACK);
    c.text((x0 - 10, y1 + 8), "0", BLACK);
    if points.is_empty() {
        return c;
    }
    let max_step = points.iter().map(|p| p.0).max().unwrap_or(1).max(1);
    let max_loss = points.iter().map(|p| p.1).fold(0.0f32, f32::max).max(1e-6) as f64;
    let max_lr = points.iter().map(|p| p.2).fold(0.0, f64::max).max(1e-12);
    // Scales: loss top-left, learning rate top-right, last step bottom-right.
    c.text((x0 - 24, y0 - 20), &format!("loss {max_loss:.2}"), BLUE);
    c.text((x1 - 64, y0 - 20), &format!("lr {max_lr:.0e}"), ORANGE);
    c.text((x1 - 64, y1 + 8), &format!("step {max_step}"), BLACK);
    let px = |s: usize| x0 + ((x1 - x0) as f64 * s as f64 / max_step as f64) as usize;
    let py = |v: f64, max: f64| y1 - ((y1 - y0) as f64 * (v / max).clamp(0.0, 1.0)) as usize;
    let mut ema = points[0].1 as f64;
    // Pixel positions of the previous step's loss, moving average and learning rate.
    type Px = (usize, usize);
    let mut prev: Option<(Px, Px, Px)> = None;
    for &(s, loss, lr) in points {
        ema = 0.95 * ema + 0.05 * loss as f64;
        let cur = (
            (px(s), py(loss as f64, max_loss)),
            (px(s), py(ema, max_loss)),
            (px(s), py(lr, max_lr)),
        );
        if let Some((a, b, l)) = prev {
            c.line(a, cur.0, GREY);
            c.line(l, cur.2, ORANGE);
            c.line(b, cur.1, BLUE);
        }
        prev = Some(cur);
    }
    c
}

struct Canvas {
    rgb: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Self {
            rgb: vec![255u8; W * H * 3],
        }
    }

    fn set(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        if x < W && y < H {
            self.rgb[(y * W + x) * 3..][..3].copy_from_slice(&rgb);
        }
    }

    fn line(&mut self, a: (usize, usize), b: (usize, usize), rgb: [u8; 3]) {
        let n = a.0.abs_diff(b.0).max(a.1.abs_diff(b.1)).max(1);
        for i in 0..=n {
            let x = a.0 as f64 + (b.0 as f64 - a.0 as f64) * i as f64 / n as f64;
            let y = a.1 as f64 + (b.1 as f64 - a.1 as f64) * i as f64 / n as f64;
            self.set(x.round() as usize, y.round() as usize, rgb);
        }
    }

    /// `s` with its top-left corner at `at`; characters without a glyph are left blank.
    fn text(&mut self, at: (usize, usize), s: &str, rgb: [u8; 3]) {
        for (i, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            let left = at.0 + i * 4 * SCALE;
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) == 0 {
                        continue;
                    }
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            self.set(left + col * SCALE + dx, at.1 + r * SCALE + dy, rgb);
                        }
                    }
                }
            }
        }
    }
}

/// Five rows of three pixels (high bit left) for the characters the labels use.
fn glyph(ch: char) -> [u8; 5] {
    match ch {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b001, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        'e' => [0b000, 0b111, 0b111, 0b100, 0b111],
        'l' => [0b110, 0b010, 0b010, 0b010, 0b111],
        'o' => [0b000, 0b111, 0b101, 0b101, 0b111],
        'p' => [0b000, 0b111, 0b101, 0b111, 0b100],
        'r' => [0b000, 0b111, 0b100, 0b100, 0b100],
        's' => [0b000, 0b111, 0b110, 0b011, 0b111],
        't' => [0b010, 0b111, 0b010, 0b010, 0b011],
        _ => [0; 5],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels of `rgb` in the image.
    fn count(c: &Canvas, rgb: [u8; 3]) -> usize {
        c.rgb.chunks_exact(3).filter(|p| *p == rgb).count()
    }

    #[test]
    fn text_draws_each_glyph_at_its_pixel_count() {
        // "1" has 8 lit font pixels, "8" has 13; each is SCALE² image pixels.
        for (s, lit) in [("1", 8), ("8", 13), ("18", 21), ("?", 0)] {
            let mut c = Canvas::new();
            c.text((10, 10), s, BLUE);
            assert_eq!(count(&c, BLUE), lit * SCALE * SCALE, "{s}");
        }
    }

    #[test]
    fn the_scales_are_written_above_the_plot_where_no_curve_reaches() {
        let c = draw(&[(1, 0.5, 1e-4), (2, 0.4, 3e-4), (3, 0.45, 2e-4)]);
        let above = Canvas {
            rgb: c.rgb[..PAD * W * 3].to_vec(),
        };
        assert!(count(&above, BLUE) > 0, "loss scale");
        assert!(count(&above, ORANGE) > 0, "learning-rate scale");
        assert!(!curve_png(&[]).unwrap().is_empty());
    }
}
