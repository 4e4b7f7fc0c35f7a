//! PNG montage: axial, coronal and sagittal planes through the subcortical centre, image in
//! grey (volume-wide 0.5–99.5 % window) with coloured outlines of the common structures.
//!
//! Planes are cut from the canonical RAS+ volume and shown in neurological convention
//! (patient right on the image right; superior / anterior up).

use super::error::{DataError, Result};
use super::labels::structure;
use super::orient::to_canonical;
use super::slicing::{slice, Normalizer, Plane};
use super::volume::{LabelVolume, Volume};

/// Renders the montage as PNG bytes. `common` holds common-set ids (1..=18, see
/// [`super::labels`]); other values are not outlined. `zoom` enlarges pixels (1..=8).
pub fn render_png(image: &Volume<f32>, common: &LabelVolume, zoom: usize) -> Result<Vec<u8>> {
    if image.dims != common.dims {
        return Err(DataError::Geometry(format!(
            "image dims {:?} differ from label dims {:?}",
            image.dims, common.dims
        )));
    }
    let zoom = zoom.clamp(1, 8);
    let (img, _) = to_canonical(image)?;
    let (lab, _) = to_canonical(common)?;
    let norm = Normalizer::robust(&img)?;
    let c = centre(&lab, |l| (1..=16).contains(&l));
    // The sagittal plane goes through the left structures: the midline shows none.
    let left = centre(&lab, |l| (1..=16).contains(&l) && l % 2 == 1);
    let panels = [(2usize, c[2]), (1, c[1]), (0, left[0])];
    let mut tiles = Vec::new();
    for (axis, index) in panels {
        let p = flip_rows(slice(&img, axis, index)?);
        let l = flip_rows(slice(&lab, axis, index)?);
        tiles.push(render_tile(&p, &l, &norm));
    }
    let h = tiles.iter().map(|t| t.rows).max().unwrap_or(1);
    let w: usize = tiles.iter().map(|t| t.cols).sum();
    let mut canvas = vec![0u8; w * h * 3];
    let mut x0 = 0;
    for t in &tiles {
        let y0 = (h - t.rows) / 2;
        for r in 0..t.rows {
            for c in 0..t.cols {
                let src = (r * t.cols + c) * 3;
                let dst = ((y0 + r) * w + x0 + c) * 3;
                if let (Some(d), Some(s)) = (canvas.get_mut(dst..dst + 3), t.data.get(src..src + 3))
                {
                    d.copy_from_slice(s);
                }
            }
        }
        x0 += t.cols;
    }
    let (w, h, canvas) = upscale(w, h, &canvas, zoom);
    encode_png(w, h, &canvas)
}

/// Centroid (canonical voxel) of the selected labels, or the volume centre if none.
fn centre(lab: &LabelVolume, select: impl Fn(i32) -> bool) -> [usize; 3] {
    let [nx, ny, _] = lab.dims;
    let (mut s, mut n) = ([0.0f64; 3], 0.0);
    for (i, l) in lab.data.iter().enumerate() {
        if select(*l) {
            s[0] += (i % nx) as f64;
            s[1] += ((i / nx) % ny) as f64;
            s[2] += (i / (nx * ny)) as f64;
            n += 1.0;
        }
    }
    if n == 0.0 {
        return lab.dims.map(|d| d / 2);
    }
    [0, 1, 2].map(|a| ((s[a] / n).round() as usize).min(lab.dims[a] - 1))
}

fn flip_rows<T: Copy>(p: Plane<T>) -> Plane<T> {
    let data = p
        .data
        .chunks(p.cols.max(1))
        .rev()
        .flatten()
        .copied()
        .collect();
    Plane { data, ..p }
}

fn render_tile(p: &Plane<f32>, l: &Plane<i32>, norm: &Normalizer) -> Plane<u8> {
    let mut data = norm.to_rgb(p);
    for r in 0..p.rows {
        for c in 0..p.cols {
            let Some(v) = l.get(r, c) else { continue };
            let Some(s) = structure(v) else { continue };
            let edge = [(0i64, 1i64), (0, -1), (1, 0), (-1, 0)]
                .iter()
                .any(|(dr, dc)| {
                    let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                    rr < 0 || cc < 0 || l.get(rr as usize, cc as usize) != Some(v)
                });
            if edge {
                let k = (r * p.cols + c) * 3;
                if let Some(px) = data.get_mut(k..k + 3) {
                    px.copy_from_slice(&s.rgb);
                }
            }
        }
    }
    Plane {
        rows: p.rows,
        cols: p.cols,
        data,
    }
}

fn upscale(w: usize, h: usize, rgb: &[u8], z: usize) -> (usize, usize, Vec<u8>) {
    let mut out = Vec::with_capacity(w * h * 3 * z * z);
    for r in 0..h * z {
        for c in 0..w * z {
            let k = ((r / z) * w + c / z) * 3;
            out.extend_from_slice(rgb.get(k..k + 3).unwrap_or(&[0, 0, 0]));
        }
    }
    (w * z, h * z, out)
}

/// Encodes interleaved RGB bytes as PNG.
pub fn encode_png(w: usize, h: usize, rgb: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let (w32, h32) = (
        u32::try_from(w).map_err(|_| DataError::Png("width too large".into()))?,
        u32::try_from(h).map_err(|_| DataError::Png("height too large".into()))?,
    );
    let mut enc = png::Encoder::new(&mut out, w32, h32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc
        .write_header()
        .map_err(|e| DataError::Png(e.to_string()))?;
    wr.write_image_data(rgb)
        .map_err(|e| DataError::Png(e.to_string()))?;
    wr.finish().map_err(|e| DataError::Png(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn montage_is_a_png_with_three_panels_and_coloured_outlines() {
        let dims = [20, 16, 12];
        let mut lab = vec![0i32; 20 * 16 * 12];
        for z in 4..8 {
            for y in 5..10 {
                for x in 6..12 {
                    lab[x + 20 * (y + 16 * z)] = 5; // Left-Putamen
                }
            }
        }
        let id = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let l = LabelVolume::new(dims, lab, id).unwrap();
        let img = l
            .with_data(l.data.iter().map(|v| *v as f32 * 0.1).collect())
            .unwrap();
        let png = render_png(&img, &l, 2).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let dec = png::Decoder::new(std::io::Cursor::new(&png));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).unwrap();
        // Axial 20×16, coronal 20×12, sagittal 16×12 side by side, zoomed ×2.
        assert_eq!((info.width, info.height), (2 * (20 + 20 + 16), 2 * 16));
        let magenta = buf.chunks(3).filter(|p| *p == [236, 13, 176]).count();
        assert!(magenta > 0, "putamen outline missing");
    }
}
