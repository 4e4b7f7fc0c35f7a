//! Prompt-centred windows: a model trained on them (`train --focus-prob`) predicts on a
//! square window around each prompt, enlarged to its whole input, instead of on the whole
//! slice.

use super::{SegmentError, SlicePrompt};
pub use crate::model::io::Focus;

/// Where a focused model predicts. The type is defined with the model file's metadata
/// ([`crate::model::io::Focus`]), the window it implies here.
impl Focus {
    /// `[row0, col0, side]` of the window for `prompt` on a `rows × cols` slice: around its
    /// box, or else its first point, and grown to hold every point. Refining clicks inside
    /// the window thus keep it, and its encoding.
    pub fn window(
        &self,
        prompt: &SlicePrompt,
        rows: usize,
        cols: usize,
    ) -> Result<[usize; 3], SegmentError> {
        let first = prompt.points.first().map(|[u, v, _]| [*u, *v, *u, *v]);
        let anchor = prompt
            .bbox
            .or(first)
            .ok_or_else(|| SegmentError::Prompt("give a point or a box".into()))?;
        let w = self.around(anchor, rows, cols);
        let inside = |u: f32, v: f32| {
            u >= w[1] as f32
                && v >= w[0] as f32
                && u < (w[1] + w[2]) as f32
                && v < (w[0] + w[2]) as f32
        };
        if prompt.points.iter().all(|[u, v, _]| inside(*u, *v)) {
            return Ok(w);
        }
        let all = prompt
            .points
            .iter()
            .fold(anchor, |[a, b, c, d], [u, v, _]| {
                [a.min(*u), b.min(*v), c.max(*u), d.max(*v)]
            });
        Ok(self.around(all, rows, cols))
    }

    fn around(&self, [u0, v0, u1, v1]: [f32; 4], rows: usize, cols: usize) -> [usize; 3] {
        let need = (self.context * (u1 - u0 + 1.0).max(v1 - v0 + 1.0)).ceil() as usize;
        let side = need.max(self.min_side).min(rows).min(cols).max(1);
        let start = |lo: f32, hi: f32, n: usize| {
            let c = (lo + hi + 1.0) / 2.0;
            ((c - side as f32 / 2.0).round().max(0.0) as usize).min(n - side)
        };
        [start(v0, v1, rows), start(u0, u1, cols), side]
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;

    #[test]
    fn focus_windows_hold_the_prompt_and_stay_inside_the_slice() {
        let f = Focus {
            context: 2.0,
            min_side: 8,
        };
        let boxed = |b| SlicePrompt {
            bbox: Some(b),
            ..Default::default()
        };
        // A 10 × 6 box: side 20, centred on the box.
        assert_eq!(
            f.window(&boxed([20.0, 30.0, 29.0, 35.0]), 64, 64).unwrap(),
            [23, 15, 20]
        );
        // Near the border the window shifts inside; it never exceeds the slice.
        assert_eq!(
            f.window(&boxed([0.0, 0.0, 3.0, 3.0]), 64, 64).unwrap(),
            [0, 0, 8]
        );
        assert_eq!(
            f.window(&boxed([0.0, 0.0, 40.0, 9.0]), 64, 30).unwrap(),
            [0, 0, 30]
        );
        // One click: the minimum side around it; a second click inside keeps the window,
        // one outside grows it to hold both.
        let click = |pts: Vec<[f32; 3]>| SlicePrompt {
            points: pts,
            ..Default::default()
        };
        let one = f.window(&click(vec![[32.0, 32.0, 1.0]]), 64, 64).unwrap();
        assert_eq!(one, [29, 29, 8]);
        let near = click(vec![[32.0, 32.0, 1.0], [34.0, 30.0, 0.0]]);
        assert_eq!(f.window(&near, 64, 64).unwrap(), one);
        let far = click(vec![[32.0, 32.0, 1.0], [50.0, 32.0, 0.0]]);
        let [r0, c0, side] = f.window(&far, 64, 64).unwrap();
        assert!(
            c0 <= 32 && c0 + side > 50 && r0 <= 32 && r0 + side > 32,
            "{r0} {c0} {side}"
        );
        assert!(f.window(&SlicePrompt::default(), 64, 64).is_err());
    }
}
