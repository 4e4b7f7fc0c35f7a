//! Tests of a session: masks pasted back into the source's voxels, focused and
//! flip-averaged predictions against plain ones, prompts outside the slice.

use super::*;
use crate::data::slicing;
use crate::data::Volume;
use crate::model::Sam;
use burn::prelude::*;

fn oblique_volume() -> Volume<f32> {
    // Stored axes: 0 = superior→inferior, 1 = right→left, 2 = posterior→anterior.
    let dims = [6, 7, 5];
    let affine = [
        [0.0, -1.0, 0.0, 3.0],
        [0.0, 0.0, 1.0, -2.0],
        [-1.0, 0.0, 0.0, 4.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let data = (0..dims.iter().product::<usize>())
        .map(|i| i as f32)
        .collect();
    Volume::new(dims, data, affine).unwrap()
}

#[test]
fn pasted_masks_land_on_the_same_world_position_in_the_source() {
    let src = oblique_volume();
    let s = Session::new(&src, crate::backend::cpu()).unwrap();
    let d = s.dims();
    let (axis, index, row, col) = (2, 1, 3, 4);
    let mut data = vec![0u8; d[1] * d[0]];
    let (rows, cols) = (d[1], d[0]);
    data[row * cols + col] = 1;
    let mask = SliceMask {
        rows,
        cols,
        data,
        iou: 1.0,
        low_res_logits: vec![],
    };
    let mut canon = vec![0i32; d.iter().product()];
    s.paste(&mut canon, axis, index, &mask, 7).unwrap();
    let out = s.to_source(canon).unwrap();
    assert_eq!(out.dims, src.dims);
    assert_eq!(out.affine, src.affine);
    let hits: Vec<usize> = (0..out.data.len()).filter(|i| out.data[*i] == 7).collect();
    assert_eq!(hits.len(), 1);
    let i = hits[0];
    let sv = [
        i % src.dims[0],
        (i / src.dims[0]) % src.dims[1],
        i / (src.dims[0] * src.dims[1]),
    ];
    let cv = slicing::slice_to_voxel(axis, index, col, row).unwrap();
    let to_f = |v: [usize; 3]| [v[0] as f64, v[1] as f64, v[2] as f64];
    let w_src = src.voxel_to_world(to_f(sv));
    let w_can = s.canonical_image().voxel_to_world(to_f(cv));
    for k in 0..3 {
        assert!((w_src[k] - w_can[k]).abs() < 1e-9, "{w_src:?} vs {w_can:?}");
    }
    // The image itself went through the same mapping.
    assert_eq!(
        s.canonical_image().get(cv[0], cv[1], cv[2]),
        src.get(sv[0], sv[1], sv[2])
    );
}

/// A random SAM small enough for unit tests (32-px input).
fn tiny_sam(device: &Device) -> Sam {
    let g = crate::model::Geometry {
        embed_dim: 16,
        depth: 1,
        num_heads: 1,
        global_attn_indexes: vec![0],
        image_size: 32,
        patch_size: 8,
        window_size: 4,
    };
    g.config().init(device)
}

/// An `n × n × 3` volume of a fixed grey pattern without symmetry on a 1 mm grid, or its
/// left-right mirror image.
fn patterned_volume(n: usize, mirror: bool) -> Volume<f32> {
    let mut eye = [[0.0; 4]; 4];
    (0..4).for_each(|i| eye[i][i] = 1.0);
    let at = |x: usize, y: usize, z: usize| ((x * 37 + y * 11 + z * 5) % 101) as f32;
    let data = (0..n * n * 3)
        .map(|i| {
            let (x, y, z) = (i % n, (i / n) % n, i / (n * n));
            at(if mirror { n - 1 - x } else { x }, y, z)
        })
        .collect();
    Volume::new([n, n, 3], data, eye).unwrap()
}

/// Averaging with the mirrored window makes predictions mirror-symmetric: the mirrored
/// image with the mirrored prompt gives the mirrored mask (a lone pass need not).
#[test]
fn flip_averaged_predictions_commute_with_mirroring() {
    let device = crate::backend::cpu();
    let sam = tiny_sam(&device);
    let n = 12;
    let image = |mirror: bool| patterned_volume(n, mirror);
    let last = (n - 1) as f32;
    let prompt = SlicePrompt {
        points: vec![[4.0, 6.0, 1.0], [8.0, 3.0, 0.0]],
        bbox: Some([2.0, 2.0, 7.0, 9.0]),
        ..Default::default()
    };
    let mirrored = SlicePrompt {
        points: vec![[last - 4.0, 6.0, 1.0], [last - 8.0, 3.0, 0.0]],
        bbox: Some([last - 7.0, 2.0, last - 2.0, 9.0]),
        ..Default::default()
    };
    let predict = |vol: &Volume<f32>, p: &SlicePrompt| {
        let mut s = Session::new(vol, device.clone()).unwrap();
        // The window is the whole (square) slice either way.
        s.set_focus(Some(Focus {
            context: 100.0,
            min_side: n,
        }));
        s.set_flip_average(true);
        pollster::block_on(s.predict(&sam, 2, 1, p)).unwrap()
    };
    let a = predict(&image(false), &prompt);
    let b = predict(&image(true), &mirrored);
    let flipped: Vec<u8> = b
        .data
        .chunks_exact(n)
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    assert_eq!(a.data, flipped);
    assert!((a.iou - b.iou).abs() < 1e-4, "{} vs {}", a.iou, b.iou);
    eprintln!("mask area {} of {}", a.area(), n * n);
}

#[test]
fn a_focused_prediction_on_a_window_of_the_whole_slice_is_the_plain_prediction() {
    let device = crate::backend::cpu();
    let sam = tiny_sam(&device);
    let n = 12;
    let mut eye = [[0.0; 4]; 4];
    (0..4).for_each(|i| eye[i][i] = 1.0);
    let data = (0..n * n * 3).map(|i| ((i * 37) % 101) as f32).collect();
    let vol = Volume::new([n, n, 3], data, eye).unwrap();
    let prompt = SlicePrompt {
        points: vec![[5.0, 6.0, 1.0]],
        bbox: Some([3.0, 2.0, 8.0, 9.0]),
        ..Default::default()
    };
    let mut plain = Session::new(&vol, device.clone()).unwrap();
    let a = pollster::block_on(plain.predict(&sam, 2, 1, &prompt)).unwrap();
    let mut focused = Session::new(&vol, device.clone()).unwrap();
    focused.set_focus(Some(Focus {
        context: 10.0,
        min_side: 1,
    }));
    let b = pollster::block_on(focused.predict(&sam, 2, 1, &prompt)).unwrap();
    assert_eq!(a.data, b.data);
    assert!((a.iou - b.iou).abs() < 1e-6);
    // A smaller window: the mask is the window's, zero outside it.
    focused.set_focus(Some(Focus {
        context: 1.0,
        min_side: 1,
    }));
    let c = pollster::block_on(focused.predict(&sam, 2, 1, &prompt)).unwrap();
    assert_eq!((c.rows, c.cols), (n, n));
    let [r0, c0, side] = Focus {
        context: 1.0,
        min_side: 1,
    }
    .window(&prompt, n, n)
    .unwrap();
    for r in 0..n {
        for col in 0..n {
            let inside = (r0..r0 + side).contains(&r) && (c0..c0 + side).contains(&col);
            assert!(
                inside || c.data[r * n + col] == 0,
                "({r}, {col}) outside the window"
            );
        }
    }
}

/// A dense prompt reaches the decoder as the mask input of its mask on the slice, in the
/// frame of a whole-slice window too, and mirrored with the window when flip-averaging.
#[test]
fn a_dense_prompt_is_the_mask_input_of_its_mask_in_every_frame() {
    let device = crate::backend::cpu();
    let sam = tiny_sam(&device);
    let n = 12;
    let image = |mirror: bool| patterned_volume(n, mirror);
    // An L-shaped mask, not mirror-symmetric.
    let dense: Vec<u8> = (0..n * n)
        .map(|i| {
            u8::from(
                (2..9).contains(&(i / n)) && (2..5).contains(&(i % n)) || i / n == 8 && i % n < 9,
            )
        })
        .collect();
    let boxed = SlicePrompt {
        bbox: Some([1.0, 1.0, 9.0, 9.0]),
        ..Default::default()
    };
    let with_dense = SlicePrompt {
        dense: Some(dense.clone()),
        ..boxed.clone()
    };
    let with_logits = SlicePrompt {
        mask_input: Some(crate::model::mask_grid::dense_prompt(&dense, n, n, 32, 16)),
        ..boxed.clone()
    };
    let mut plain = Session::new(&image(false), device.clone()).unwrap();
    let a = pollster::block_on(plain.predict(&sam, 2, 1, &with_dense)).unwrap();
    let b = pollster::block_on(plain.predict(&sam, 2, 1, &with_logits)).unwrap();
    let none = pollster::block_on(plain.predict(&sam, 2, 1, &boxed)).unwrap();
    assert_eq!(a.low_res_logits, b.low_res_logits);
    assert_ne!(
        a.low_res_logits, none.low_res_logits,
        "the dense prompt is used"
    );
    // Focused on a window that is the whole slice: the same mask.
    let whole = Focus {
        context: 100.0,
        min_side: n,
    };
    let mut focused = Session::new(&image(false), device.clone()).unwrap();
    focused.set_focus(Some(whole));
    let c = pollster::block_on(focused.predict(&sam, 2, 1, &with_dense)).unwrap();
    assert_eq!(a.data, c.data);
    // Flip-averaged: the mirrored image with the mirrored prompts gives the mirrored mask.
    let mirror = |m: &[u8]| -> Vec<u8> {
        m.chunks_exact(n)
            .flat_map(|row| row.iter().rev().copied())
            .collect()
    };
    let last = (n - 1) as f32;
    let mirrored = SlicePrompt {
        bbox: Some([last - 9.0, 1.0, last - 1.0, 9.0]),
        dense: Some(mirror(&dense)),
        ..Default::default()
    };
    let averaged = |vol: &Volume<f32>, p: &SlicePrompt| {
        let mut s = Session::new(vol, device.clone()).unwrap();
        s.set_focus(Some(whole));
        s.set_flip_average(true);
        pollster::block_on(s.predict(&sam, 2, 1, p)).unwrap()
    };
    let d = averaged(&image(false), &with_dense);
    let e = averaged(&image(true), &mirrored);
    assert_eq!(d.data, mirror(&e.data));
    // A dense mask of the wrong size is refused.
    let bad = SlicePrompt {
        dense: Some(vec![1; 5]),
        ..boxed
    };
    assert!(pollster::block_on(plain.predict(&sam, 2, 1, &bad)).is_err());
}

#[test]
fn prompts_outside_the_slice_are_errors_not_panics() {
    let device = crate::backend::cpu();
    let sam = tiny_sam(&device);
    let mut s = Session::new(&oblique_volume(), device).unwrap();
    for p in [
        SlicePrompt {
            points: vec![[99.0, 1.0, 1.0]],
            ..Default::default()
        },
        SlicePrompt {
            points: vec![[1.0, 1.0, 3.0]],
            ..Default::default()
        },
        SlicePrompt {
            bbox: Some([3.0, 1.0, 1.0, 2.0]),
            ..Default::default()
        },
        SlicePrompt::default(),
    ] {
        assert!(
            pollster::block_on(s.predict(&sam, 2, 1, &p)).is_err(),
            "{p:?}"
        );
    }
    assert!(pollster::block_on(s.predict(
        &sam,
        2,
        99,
        &SlicePrompt {
            points: vec![[1.0, 1.0, 1.0]],
            ..Default::default()
        }
    ))
    .is_err());
    assert!(pollster::block_on(s.predict(
        &sam,
        5,
        0,
        &SlicePrompt {
            points: vec![[1.0, 1.0, 1.0]],
            ..Default::default()
        }
    ))
    .is_err());
    let ok = pollster::block_on(s.predict(
        &sam,
        2,
        1,
        &SlicePrompt {
            points: vec![[1.0, 1.0, 1.0]],
            ..Default::default()
        },
    ))
    .unwrap();
    assert_eq!((ok.rows, ok.cols), (s.dims()[1], s.dims()[0]));
    let vol = pollster::block_on(s.propagate(
        &sam,
        2,
        1,
        &ok,
        None,
        &StopRules::default(),
        &mut |_, _| {},
    ))
    .unwrap();
    assert_eq!(vol.mask.len(), s.dims().iter().product::<usize>());
    // Each direction ends on a slice it kept, at or beyond the seed's.
    assert!(
        vol.ends[0].last >= 1 && vol.ends[1].last <= 1,
        "{:?}",
        vol.ends
    );
}

/// A box prompt's mask lies within the box, on whole slices and on windows; the same point
/// without the box does reach outside it (so the box is what keeps the mask in).
#[test]
fn a_box_prompts_mask_stays_within_its_box() {
    let device = crate::backend::cpu();
    let sam = tiny_sam(&device);
    let vol = patterned_volume(12, false);
    let bbox = [3.0, 2.0, 8.0, 9.0];
    let outside = |m: &SliceMask| {
        (0..m.rows * m.cols)
            .filter(|i| {
                let (r, c) = ((i / m.cols) as f32, (i % m.cols) as f32);
                m.data[*i] != 0 && !(c >= bbox[0] && c <= bbox[2] && r >= bbox[1] && r <= bbox[3])
            })
            .count()
    };
    // The window path with a window of the whole slice, so that the point could reach out.
    for focus in [
        None,
        Some(Focus {
            context: 100.0,
            min_side: 12,
        }),
    ] {
        let mut s = Session::new(&vol, device.clone()).unwrap();
        s.set_focus(focus);
        let point = SlicePrompt {
            points: vec![[5.0, 6.0, 1.0]],
            ..Default::default()
        };
        let free = pollster::block_on(s.predict(&sam, 2, 1, &point)).unwrap();
        assert!(
            outside(&free) > 0,
            "{focus:?}: the point's mask is inside the box anyway"
        );
        let boxed = SlicePrompt {
            bbox: Some(bbox),
            ..point
        };
        let m = pollster::block_on(s.predict(&sam, 2, 1, &boxed)).unwrap();
        assert_eq!(outside(&m), 0, "{focus:?}: the mask leaves its box");
    }
}

#[test]
fn keep_within_clears_exactly_the_pixels_outside_the_box() {
    let mut m = SliceMask {
        rows: 3,
        cols: 4,
        data: vec![1; 12],
        iou: 0.0,
        low_res_logits: Vec::new(),
    };
    m.keep_within([1.0, 0.5, 2.0, 2.0]);
    assert_eq!(m.data, vec![0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1, 0]);
}

/// A mask is its logits cut at its structure kind's threshold, the slice's or the walk's as
/// asked, and a prompt of another kind or of none keeps SAM's 0.
#[test]
fn masks_are_cut_at_their_kinds_threshold() {
    use crate::model::io::{Cut, MaskThresholds};
    let device = crate::backend::cpu();
    let sam = tiny_sam(&device);
    let n = 12;
    let vol = patterned_volume(n, false);
    let prompt = |structure| SlicePrompt {
        points: vec![[5.0, 6.0, 1.0]],
        structure,
        ..Default::default()
    };
    for focus in [
        None,
        Some(Focus {
            context: 2.0,
            min_side: 8,
        }),
    ] {
        let mut s = Session::new(&vol, device.clone()).unwrap();
        s.set_focus(focus);
        let scores = pollster::block_on(s.scores(&sam, 2, 1, &prompt(Some(3)))).unwrap();
        // A threshold between the logits' quartiles, so that the cut matters.
        let mut sorted: Vec<f32> = scores
            .logits
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        sorted.sort_by(f32::total_cmp);
        let t = 0.5 * (sorted[sorted.len() / 4] + sorted[3 * sorted.len() / 4]);
        let at_zero = pollster::block_on(s.predict(&sam, 2, 1, &prompt(Some(3)))).unwrap();
        assert_eq!(at_zero.data, scores.mask(0.0).data, "{focus:?}");
        // A walk's cut alone leaves prompts on a slice at 0.
        let mut table = MaskThresholds::uniform(0.0);
        table.walk[3] = t;
        s.set_mask_thresholds(Some(table));
        let walked =
            pollster::block_on(s.predict_cut(&sam, 2, 1, &prompt(Some(3)), Cut::Walk)).unwrap();
        let on_slice = pollster::block_on(s.predict(&sam, 2, 1, &prompt(Some(3)))).unwrap();
        assert_eq!(on_slice.data, at_zero.data, "{focus:?}");
        let expected: Vec<u8> = scores.logits.iter().map(|v| u8::from(*v > t)).collect();
        assert_eq!(walked.data, expected, "{focus:?}");
        table.slice[3] = t;
        s.set_mask_thresholds(Some(table));
        let cut = pollster::block_on(s.predict(&sam, 2, 1, &prompt(Some(3)))).unwrap();
        assert_eq!(cut.data, expected, "{focus:?}");
        assert_ne!(
            cut.data, at_zero.data,
            "{focus:?}: the cut at {t} changed nothing"
        );
        let other_kind = pollster::block_on(s.predict(&sam, 2, 1, &prompt(Some(2)))).unwrap();
        assert_eq!(other_kind.data, at_zero.data, "{focus:?}");
        let no_kind = pollster::block_on(s.predict(&sam, 2, 1, &prompt(None))).unwrap();
        assert_eq!(no_kind.data, at_zero.data, "{focus:?}");
    }
}
