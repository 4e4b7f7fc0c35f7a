//! The training curve as a PNG: loss per step (grey), its moving average (blue) and the
//! learning rate (orange, own scale), on a light grid. No text: the numbers are in the log.

use crate::data::montage::encode_png;
use crate::data::Result;

const W: usize = 800;
const H: usize = 400;
const PAD: usize = 30;

/// `points`: (step, loss, lr).
pub fn curve_png(points: &[(usize, f32, f64)]) -> Result<Vec<u8>> {
    let mut img = vec![255u8; W * H * 3];
    let (x0, x1, y0, y1) = (PAD, W - PAD, PAD, H - PAD);
    for i in 0..=10 {
        let x = x0 + (x1 - x0) * i / 10;
        let y = y0 + (y1 - y0) * i / 10;
        line(&mut img, (x, y0), (x, y1), [225, 225, 225]);
        line(&mut img, (x0, y), (x1, y), [225, 225, 225]);
    }
    line(&mut img, (x0, y1), (x1, y1), [0, 0, 0]);
    line(&mut img, (x0, y0), (x0, y1), [0, 0, 0]);
    if points.is_empty() {
        return encode_png(W, H, &img);
    }
    let max_step = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let max_loss = points.iter().map(|p| p.1).fold(0.0f32, f32::max).max(1e-6) as f64;
    let max_lr = points.iter().map(|p| p.2).fold(0.0, f64::max).max(1e-12);
    let px = |s: usize| x0 + ((x1 - x0) as f64 * s as f64 / max_step) as usize;
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
        if let Some((a, b, c)) = prev {
            line(&mut img, a, cur.0, [170, 170, 170]);
            line(&mut img, c, cur.2, [240, 150, 40]);
            line(&mut img, b, cur.1, [30, 80, 200]);
        }
        prev = Some(cur);
    }
    encode_png(W, H, &img)
}

fn line(img: &mut [u8], a: (usize, usize), b: (usize, usize), rgb: [u8; 3]) {
    let n = a.0.abs_diff(b.0).max(a.1.abs_diff(b.1)).max(1);
    for i in 0..=n {
        let x = a.0 as f64 + (b.0 as f64 - a.0 as f64) * i as f64 / n as f64;
        let y = a.1 as f64 + (b.1 as f64 - a.1 as f64) * i as f64 / n as f64;
        let (x, y) = (x.round() as usize, y.round() as usize);
        if x < W && y < H {
            img[(y * W + x) * 3..(y * W + x) * 3 + 3].copy_from_slice(&rgb);
        }
    }
}
