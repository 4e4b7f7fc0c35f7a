//! Tests of the sampler: targets on the logit grid, prompts, windows, fragments and
//! augmentations.

use super::augment::{crop, flip};
use super::*;

#[test]
fn low_res_target_covers_the_mask_at_the_models_scale() {
    // 8×16 slice, square input 32, logits 8: one logit = 4 input px = 2 slice px.
    let (rows, cols) = (8, 16);
    let mut m = vec![0u8; rows * cols];
    for v in 0..4 {
        for u in 0..4 {
            m[v * cols + u] = 1;
        }
    }
    let t = low_res_target(&m, rows, cols, 32, 8);
    assert_eq!(t[0], 1.0);
    assert_eq!(t[1], 1.0);
    assert_eq!(t[2], 0.0);
    assert_eq!(t[8 + 1], 1.0);
    assert_eq!(t[2 * 8], 0.0);
    // Rows below the resized slice (padding) are empty.
    assert!(t[4 * 8..].iter().all(|v| *v == 0.0));
}

#[test]
fn neighbour_boxes_come_from_the_structure_and_targets_may_be_empty_where_it_ends() {
    // A 6×6-voxel structure on axial slices 6 and 7 of a 16³ volume.
    let n = 16;
    let mut lab = vec![0i32; n * n * n];
    for z in 6..=7 {
        for y in 4..=9 {
            for x in 4..=9 {
                lab[(z * n + y) * n + x] = 5;
            }
        }
    }
    let eye = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let image = Volume::new([n; 3], lab.iter().map(|l| *l as f32).collect(), eye).unwrap();
    let labels = Volume::new([n; 3], lab, eye).unwrap();
    let norm = Normalizer::robust(&image).unwrap();
    let cfg = SamplerConfig {
        axes: vec![2],
        crop_prob: 0.0,
        flip_prob: 0.0,
        neighbour_prob: 1.0,
        ..SamplerConfig::default()
    };
    let mut rng = Rng::new(7);
    let (mut empty, mut full) = (0, 0);
    for _ in 0..40 {
        let s = sample_slice(&image, &norm, &labels, &[5], &cfg, false, &mut rng).unwrap();
        assert_eq!(
            s.boxes,
            vec![[3.0, 3.0, 10.0, 10.0]],
            "the source mask's box + 1 px"
        );
        match s.targets[0].1.iter().filter(|v| **v != 0).count() {
            0 => empty += 1,
            36 => full += 1,
            k => panic!("a slice holds 0 or 36 voxels of the structure, not {k}"),
        }
    }
    // Neighbours 1–3 slices away: slice 7 from 6 (and back) is full, the rest empty.
    assert!(empty > 0 && full > 0, "{empty} empty, {full} full");
}

#[test]
fn dense_prompts_are_the_source_mask_within_a_pixel_and_follow_the_window() {
    // 6×6 voxels on axial slices 6 and 7 of a 128 × 128 × 16 volume (large enough for
    // windows smaller than the slice).
    let (n, nz) = (128, 16);
    let mut lab = vec![0i32; n * n * nz];
    for z in 6..=7 {
        for y in 40..=45 {
            for x in 40..=45 {
                lab[(z * n + y) * n + x] = 5;
            }
        }
    }
    let mut eye = [[0.0; 4]; 4];
    (0..4).for_each(|i| eye[i][i] = 1.0);
    let dims = [n, n, nz];
    let image = Volume::new(dims, lab.iter().map(|l| *l as f32).collect(), eye).unwrap();
    let labels = Volume::new(dims, lab, eye).unwrap();
    let norm = Normalizer::robust(&image).unwrap();
    let plain = SamplerConfig {
        axes: vec![2],
        crop_prob: 0.0,
        flip_prob: 0.0,
        neighbour_prob: 1.0,
        ..SamplerConfig::default()
    };
    let mut rng = Rng::new(3);
    let s = sample_slice(&image, &norm, &labels, &[5], &plain, false, &mut rng).unwrap();
    assert!(s.dense.is_empty(), "no dense prompts unless asked");
    let (mut shapes, mut focused) = (std::collections::BTreeSet::new(), 0);
    for focus_prob in [0.0, 1.0] {
        let cfg = SamplerConfig {
            dense_prompt_prob: 1.0,
            focus_prob,
            ..plain.clone()
        };
        for _ in 0..30 {
            let s = sample_slice(&image, &norm, &labels, &[5], &cfg, false, &mut rng).unwrap();
            let (rows, cols) = (s.image.rows, s.image.cols);
            assert_eq!(s.dense.len(), s.targets.len());
            assert_eq!(s.dense[0].len(), rows * cols);
            focused += usize::from(rows < n);
            // The box is the source mask's plus 1 px (inside the window); the dense mask is
            // that mask itself, grown or shrunk by at most one pixel, in the same frame.
            let [u0, v0, u1, v1] = s.boxes[0].map(|v| v as isize);
            let d = bbox(&s.dense[0], rows, cols).expect("a dense prompt is never empty");
            let inset = [
                d[0] as isize - u0,
                d[1] as isize - v0,
                u1 - d[2] as isize,
                v1 - d[3] as isize,
            ];
            assert!(
                inset.iter().all(|i| (0..=2).contains(i)) && inset.iter().all(|i| *i == inset[0]),
                "dense box {d:?} against prompt box {:?}",
                s.boxes[0]
            );
            let area = s.dense[0].iter().filter(|m| **m != 0).count();
            shapes.insert(area);
        }
    }
    assert!(focused > 0, "some samples were cut to a window");
    // As it is (36 px), grown by its 4-neighbours (36 + 4 sides × 6 = 60), shrunk (16).
    assert_eq!(shapes, [16, 36, 60].into_iter().collect());
}

/// Boxes of structures 5 (6 × 10 px) and 6 far apart in a 64-wide axial plane; the
/// image holds the label values, so a misaligned cut shows as a mismatch.
fn two_structures() -> (Volume<f32>, LabelVolume, Normalizer) {
    let n = 64;
    let mut lab = vec![0i32; n * n * 4];
    for z in 0..4 {
        for y in 10..20 {
            for x in 8..14 {
                lab[(z * n + y) * n + x] = 5;
            }
            for x in 50..56 {
                lab[(z * n + y) * n + x] = 6;
            }
        }
    }
    volumes(lab, n)
}

/// An `n × n × 4` label volume and an image holding its label values, on a 1 mm grid.
fn volumes(lab: Vec<i32>, n: usize) -> (Volume<f32>, LabelVolume, Normalizer) {
    let mut eye = [[0.0; 4]; 4];
    (0..4).for_each(|i| eye[i][i] = 1.0);
    let dims = [n, n, 4];
    let image = Volume::new(dims, lab.iter().map(|l| *l as f32 * 10.0).collect(), eye).unwrap();
    let labels = Volume::new(dims, lab, eye).unwrap();
    let norm = Normalizer::robust(&image).unwrap();
    (image, labels, norm)
}

/// Axial slices, no augmentation or propagation boxes, every slice cut to a 2× window.
fn focused_axial() -> SamplerConfig {
    SamplerConfig {
        axes: vec![2],
        crop_prob: 0.0,
        flip_prob: 0.0,
        neighbour_prob: 0.0,
        focus_prob: 1.0,
        focus_context: [2.0, 2.0],
        focus_min_side: [16, 16],
        ..SamplerConfig::default()
    }
}

#[test]
fn prompt_variants_add_prompts_of_the_same_kind_for_the_first_structure() {
    let (image, labels, norm) = two_structures();
    let cfg = SamplerConfig {
        prompt_variants: 3,
        ..focused_axial()
    };
    let mut rng = Rng::new(5);
    for use_points in [false, true] {
        for _ in 0..10 {
            let s =
                sample_slice(&image, &norm, &labels, &[5, 6], &cfg, use_points, &mut rng).unwrap();
            let side = s.image.rows;
            assert_eq!(s.targets.len(), 3, "one structure, three prompts");
            assert!(s.targets.iter().all(|t| t == &s.targets[0]));
            let mask = &s.targets[0].1;
            if use_points {
                assert_eq!((s.points.len(), s.boxes.len()), (3, 0));
                let n = s.points[0].len();
                assert!(s.points.iter().all(|p| p.len() == n), "equal point counts");
                for [u, v, lb] in s.points.iter().flatten() {
                    let inside = mask[*v as usize * side + *u as usize] == 1;
                    assert!(*lb != 1.0 || inside, "a positive point off the structure");
                    assert!(*lb != 0.0 || !inside, "a negative point on the structure");
                }
            } else {
                assert_eq!((s.boxes.len(), s.points.len()), (3, 0));
                let b = bbox(mask, side, side).unwrap().map(|x| x as f32);
                for [u0, v0, u1, v1] in &s.boxes {
                    // Jittered by at most a few pixels around the structure, in the window.
                    assert!(*u1 < side as f32 && *v1 < side as f32);
                    assert!(u0 <= u1 && v0 <= v1);
                    let d = [u0 - b[0], v0 - b[1], u1 - b[2], v1 - b[3]];
                    assert!(d.iter().all(|x| x.abs() <= 6.0), "{d:?}");
                }
                assert!(s.boxes.windows(2).any(|w| w[0] != w[1]), "jitters differ");
            }
        }
    }
    // Propagation boxes keep one prompt: their target may be empty.
    let cfg = SamplerConfig {
        neighbour_prob: 1.0,
        focus_prob: 0.0,
        ..cfg
    };
    // (A neighbour outside the volume falls back to the slice itself, with variants.)
    let mut propagation = 0;
    for _ in 0..20 {
        let s = sample_slice(&image, &norm, &labels, &[5], &cfg, false, &mut rng).unwrap();
        if s.boxes == vec![[7.0, 9.0, 14.0, 20.0]] {
            propagation += 1;
        } else {
            assert_eq!(s.targets.len(), 3);
        }
    }
    assert!(propagation > 0);
}

#[test]
fn spread_compares_the_box_of_all_pieces_with_the_largest_pieces_box() {
    let (rows, cols) = (10, 20);
    let mut m = vec![0u8; rows * cols];
    assert_eq!(spread(&m, rows, cols), 0.0);
    // A 3 × 4 block (rows 2-4, cols 3-6): one piece.
    for v in 2..5 {
        m[v * cols + 3..v * cols + 7].fill(1);
    }
    assert_eq!(spread(&m, rows, cols), 1.0);
    // A diagonal neighbour is another piece under 4-connectivity: box 4 × 5 = 20 px.
    m[5 * cols + 7] = 1;
    assert_eq!(spread(&m, rows, cols), 20.0 / 12.0);
    // A lone pixel at (row 9, col 19): box rows 2-9, cols 3-19 = 8 × 17.
    m[9 * cols + 19] = 1;
    assert_eq!(spread(&m, rows, cols), 136.0 / 12.0);
    // A mask of the wrong size is refused, not indexed past its end.
    assert_eq!(spread(&m[..rows * cols - 1], rows, cols), 0.0);
}

#[test]
fn fragment_prob_prefers_slices_where_the_structure_lies_in_pieces() {
    // Structure 5 is a 10 × 6 block on 4 axial slices; on slice 3 only, a 2-px island far
    // to its right stretches its box to column 57.
    let n = 64;
    let mut lab = vec![0i32; n * n * 4];
    for z in 0..4 {
        for y in 10..20 {
            for x in 8..14 {
                lab[(z * n + y) * n + x] = 5;
            }
        }
    }
    lab[(3 * n + 30) * n + 56] = 5;
    lab[(3 * n + 30) * n + 57] = 5;
    let (image, labels, norm) = volumes(lab, n);
    let fragmented_share = |fragment_prob: f64, use_points: bool| {
        let cfg = SamplerConfig {
            axes: vec![2],
            crop_prob: 0.0,
            flip_prob: 0.0,
            neighbour_prob: 0.0,
            box_jitter: 0.0,
            max_points: 1,
            fragment_prob,
            ..SamplerConfig::default()
        };
        let mut rng = Rng::new(11);
        let mut hits = 0;
        for _ in 0..40 {
            let s = sample_slice(&image, &norm, &labels, &[5], &cfg, use_points, &mut rng).unwrap();
            // The island is in the target (and so in the box) only on slice 3.
            hits += usize::from(s.targets[0].1[30 * n + 57] == 1);
            if !use_points {
                let wide = s.boxes[0][2] == 57.0;
                assert_eq!(
                    wide,
                    s.targets[0].1[30 * n + 57] == 1,
                    "box from the target"
                );
            }
        }
        hits
    };
    // 1 slice in 4 holds the island; 16 draws find it nearly always.
    let (plain, preferred) = (fragmented_share(0.0, false), fragmented_share(1.0, false));
    assert!(plain < 20, "{plain} of 40 without the preference");
    assert!(preferred >= 36, "{preferred} of 40 with fragment_prob 1");
    // Point steps keep the plain distribution.
    assert!(fragmented_share(1.0, true) < 20);
}

#[test]
fn focused_samples_cut_image_masks_and_prompts_to_one_window_around_the_first_prompt() {
    let (image, labels, norm) = two_structures();
    let cfg = SamplerConfig {
        box_jitter: 0.0,
        ..focused_axial()
    };
    let mut rng = Rng::new(3);
    for use_points in [false, true] {
        for _ in 0..10 {
            let s =
                sample_slice(&image, &norm, &labels, &[5, 6], &cfg, use_points, &mut rng).unwrap();
            // Box 6 × 10 → window side 20; the other structure is 36 px away: dropped.
            let side = if use_points { s.image.rows } else { 20 };
            assert_eq!((s.image.rows, s.image.cols), (side, side));
            assert_eq!(s.targets.len(), 1);
            let (l, mask) = &s.targets[0];
            let fg = norm.to_u8(*l as f32 * 10.0);
            for (m, g) in mask.iter().zip(&s.image.data) {
                assert_eq!(*m != 0, *g == [fg; 3], "image and mask disagree");
            }
            assert_eq!(mask.iter().filter(|v| **v != 0).count(), 60);
            if use_points {
                for [u, v, lb] in &s.points[0] {
                    if *lb == 1.0 {
                        assert_eq!(mask[*v as usize * side + *u as usize], 1);
                    }
                }
            } else {
                let [u0, v0, u1, v1] = s.boxes[0];
                let b = bbox(mask, side, side).unwrap();
                assert_eq!([u0, v0, u1, v1], b.map(|x| x as f32));
            }
        }
    }
}

#[test]
fn flips_and_crops_keep_image_and_labels_aligned() {
    let p = Plane {
        rows: 2,
        cols: 3,
        data: vec![1, 2, 3, 4, 5, 6],
    };
    assert_eq!(flip(&p, false, false, true).data, vec![1, 4, 2, 5, 3, 6]);
    assert_eq!(flip(&p, true, true, false).data, vec![6, 5, 4, 3, 2, 1]);
    assert_eq!(crop(&p, 1, 1, 1, 2).data, vec![5, 6]);
}

#[test]
fn with_a_slice_gap_the_channels_are_the_neighbouring_slices() {
    let (_, labels, _) = two_structures();
    // Each axial slice z of the image holds the value 10 z + 1 (4 slices).
    let n = 64;
    let mut eye = [[0.0; 4]; 4];
    (0..4).for_each(|i| eye[i][i] = 1.0);
    let values = (0..n * n * 4)
        .map(|i| (10 * (i / (n * n)) + 1) as f32)
        .collect();
    let image = Volume::new([n, n, 4], values, eye).unwrap();
    let norm = Normalizer::robust(&image).unwrap();
    let grey = |z: usize| norm.to_u8((10 * z + 1) as f32);
    let mut rng = Rng::new(3);
    let mut seen = [false; 4];
    for gap in [1, 2] {
        let cfg = SamplerConfig {
            axes: vec![2],
            slice_gap: gap,
            ..SamplerConfig::default()
        };
        for _ in 0..40 {
            let s = sample_slice(&image, &norm, &labels, &[5, 6], &cfg, false, &mut rng).unwrap();
            let z = (0..4).find(|z| grey(*z) == s.image.data[0][1]).unwrap();
            seen[z] = true;
            let want = [grey(z.saturating_sub(gap)), grey(z), grey((z + gap).min(3))];
            assert!(
                s.image.data.iter().all(|p| *p == want),
                "slice {z}, gap {gap}"
            );
        }
    }
    assert!(seen.iter().all(|s| *s), "every slice drawn: {seen:?}");
}
