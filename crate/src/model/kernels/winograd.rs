//! The neck's 3 × 3 convolution by Winograd's minimal filtering F(2 × 2, 3 × 3) (Lavin and
//! Gray, 2015): each 2 × 2 block of outputs from a 4 × 4 input tile with 16 multiplies per
//! channel pair instead of 36, so the matmul behind it does 2.25× fewer multiply-adds. The
//! three transforms are exact in binary (entries 0, ±1, ±1/2); they only reorder sums.
//!
//! With `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` per tile and channel pair, the 16 products of all
//! channel pairs are one batched matmul `[16, O, C] × [16, C, tiles]`.

use burn::nn::conv::Conv2d;
use burn::nn::PaddingConfig2d;
use burn::prelude::*;

use super::applies;

/// `conv(x)` for a 3 × 3, stride 1, padding 1, undilated, ungrouped convolution of
/// `[B, C, H, W]` on Flex outside autodiff; `None` for anything else.
pub fn conv3x3(conv: &Conv2d, x: &Tensor<4>) -> Option<Tensor<4>> {
    let [o, c, kh, kw] = conv.weight.dims();
    let same = matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1))
        || matches!(conv.padding, PaddingConfig2d::Same);
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    let weight = conv.weight.val();
    if [kh, kw] != [3, 3] || !same || !plain || !applies(x) || !applies(&weight) {
        return None;
    }
    let [b, _, h, w] = x.dims();
    if [b, c, o, h, w].contains(&0) {
        return None;
    }
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let device = x.device();
    let g = weight.into_data();
    let u = filter_transform(g.as_slice::<f32>().ok()?, o * c);
    let input = x.clone().into_data();
    let v = input_transform(input.as_slice::<f32>().ok()?, [b, c, h, w]);
    let u = Tensor::<3>::from_data(TensorData::new(u, [16, o, c]), &device);
    let v = Tensor::<3>::from_data(TensorData::new(v, [16, c, b * th * tw]), &device);
    let m = u.matmul(v).into_data(); // [16, O, tiles]
    let bias = match &conv.bias {
        Some(p) => Some(p.val().into_data().try_to_vec::<f32>().ok()?),
        None => None,
    };
    let y = output_transform(m.as_slice::<f32>().ok()?, [b, o, h, w], bias.as_deref());
    Some(Tensor::from_data(TensorData::new(y, [b, o, h, w]), &device))
}

/// `G g Gᵀ` for `n` filters `[n, 3, 3]`, as 16 planes `[16, n]` (plane `4a + b` is entry
/// `(a, b)`), computed plane by plane so that each line vectorises across filters.
fn filter_transform(g: &[f32], n: usize) -> Vec<f32> {
    // Taps as 9 planes first: strided gathers once, then contiguous arithmetic.
    let mut taps = vec![0.0f32; 9 * n];
    for (f, k) in g.chunks_exact(9).enumerate() {
        for (t, &v) in k.iter().enumerate() {
            taps[t * n + f] = v;
        }
    }
    let tap = |i: usize, j: usize| &taps[(3 * i + j) * n..][..n];
    // Rows: `G g`, 4 × 3 planes. G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]].
    let mut rows = vec![0.0f32; 12 * n];
    for j in 0..3 {
        let (g0, g1, g2) = (tap(0, j), tap(1, j), tap(2, j));
        for f in 0..n {
            rows[j * n + f] = g0[f];
            rows[(3 + j) * n + f] = 0.5 * (g0[f] + g1[f] + g2[f]);
            rows[(6 + j) * n + f] = 0.5 * (g0[f] - g1[f] + g2[f]);
            rows[(9 + j) * n + f] = g2[f];
        }
    }
    // Columns: `(G g) Gᵀ`.
    let mut u = vec![0.0f32; 16 * n];
    for a in 0..4 {
        let r = |j: usize| &rows[(3 * a + j) * n..][..n];
        let (r0, r1, r2) = (r(0), r(1), r(2));
        let out = &mut u[4 * a * n..][..4 * n];
        let (u0, rest) = out.split_at_mut(n);
        let (u1, rest) = rest.split_at_mut(n);
        let (u2, u3) = rest.split_at_mut(n);
        for f in 0..n {
            u0[f] = r0[f];
            u1[f] = 0.5 * (r0[f] + r1[f] + r2[f]);
            u2[f] = 0.5 * (r0[f] - r1[f] + r2[f]);
            u3[f] = r2[f];
        }
    }
    u
}

/// `Bᵀ d B` for every 4 × 4 tile (stride 2, zero beyond the edges: the padding) of
/// `[B, C, H, W]`, as `[16, C, B·th·tw]`. Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
/// [0, 1, 0, -1]].
fn input_transform(x: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let tiles = b * th * tw;
    let mut v = vec![0.0f32; 16 * c * tiles];
    let at = |plane: &[f32], y: isize, x: isize| -> f32 {
        if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
            0.0
        } else {
            plane[y as usize * w + x as usize]
        }
    };
    for bi in 0..b {
        for ci in 0..c {
            let plane = &x[(bi * c + ci) * h * w..][..h * w];
            for ty in 0..th {
                for tx in 0..tw {
                    let (y0, x0) = (2 * ty as isize - 1, 2 * tx as isize - 1);
                    let d: [[f32; 4]; 4] = std::array::from_fn(|i| {
                        std::array::from_fn(|j| at(plane, y0 + i as isize, x0 + j as isize))
                    });
                    // Bᵀ d, then (Bᵀ d) B.
                    let e: [[f32; 4]; 4] = std::array::from_fn(|j| {
                        let col = |i: usize| d[i][j];
                        [
                            col(0) - col(2),
                            col(1) + col(2),
                            col(2) - col(1),
                            col(1) - col(3),
                        ]
                    }); // e[j][a] = (Bᵀ d)[a][j]
                    let t = (bi * th + ty) * tw + tx;
                    for a in 0..4 {
                        let row = [e[0][a], e[1][a], e[2][a], e[3][a]];
                        let vals = [
                            row[0] - row[2],
                            row[1] + row[2],
                            row[2] - row[1],
                            row[1] - row[3],
                        ];
                        for (bb, val) in vals.into_iter().enumerate() {
                            v[((4 * a + bb) * c + ci) * tiles + t] = val;
                        }
                    }
                }
            }
        }
    }
    v
}

/// `Aᵀ m A` (Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]) of the `[16, O, tiles]` products into
/// `[B, O, H, W]`, dropping the outputs past an odd edge, plus the bias.
fn output_transform(m: &[f32], [b, o, h, w]: [usize; 4], bias: Option<&[f32]>) -> Vec<f32> {
    let (th, tw) = (h.div_ceil(2), w.div_ceil(2));
    let tiles = b * th * tw;
    let mut y = vec![0.0f32; b * o * h * w];
    for oi in 0..o {
        let add = bias.map_or(0.0, |bs| bs[oi]);
        for bi in 0..b {
            let out = &mut y[(bi * o + oi) * h * w..][..h * w];
            for ty in 0..th {
                for tx in 0..tw {
                    let t = (bi * th + ty) * tw + tx;
                    let e = |k: usize| m[(k * o + oi) * tiles + t];
                    let col = |i: usize, j: usize| e(4 * i + j);
                    // Aᵀ m: two rows of four; then (Aᵀ m) A: two of two.
                    let s: [[f32; 4]; 2] = [
                        std::array::from_fn(|j| col(0, j) + col(1, j) + col(2, j)),
                        std::array::from_fn(|j| col(1, j) - col(2, j) - col(3, j)),
                    ];
                    for (i, s) in s.iter().enumerate() {
                        let yy = 2 * ty + i;
                        if yy >= h {
                            continue;
                        }
                        let vals = [s[0] + s[1] + s[2], s[1] - s[2] - s[3]];
                        for (j, val) in vals.into_iter().enumerate() {
                            let xx = 2 * tx + j;
                            if xx < w {
                                out[yy * w + xx] = val + add;
                            }
                        }
                    }
                }
            }
        }
    }
    y
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    #[test]
    fn equals_burns_convolution_on_even_and_odd_sizes() {
        let device = crate::backend::flex();
        for (bias, [b, c, o, h, w]) in [(false, [1, 16, 24, 8, 8]), (true, [2, 5, 7, 7, 10])] {
            let conv = Conv2dConfig::new([c, o], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(bias)
                .init(&device);
            let x = Tensor::<4>::random([b, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let got = conv3x3(&conv, &x).expect("a 3x3 same convolution on Flex");
            let want = conv.forward(x);
            assert_eq!(got.dims(), want.dims());
            let err: f32 = (got - want).abs().max().into_scalar();
            assert!(err < 2e-6, "max error {err}");
        }
    }

    #[test]
    fn declines_other_convolutions_and_autodiff() {
        let device = crate::backend::flex();
        let x = Tensor::<4>::random([1, 4, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        let strided = Conv2dConfig::new([4, 4], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        assert!(conv3x3(&strided, &x).is_none());
        let one = Conv2dConfig::new([4, 4], [1, 1]).init(&device);
        assert!(conv3x3(&one, &x).is_none());
        let same = Conv2dConfig::new([4, 4], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        assert!(conv3x3(&same, &x.autodiff()).is_none());
    }
}
