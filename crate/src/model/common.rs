//! Layers shared by the SAM components, and loading of burn layers from a [`StateDict`].

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

use super::kernels::{attention_probs, gelu, RelPosBias};

use crate::weights::WeightsError;

/// Largest attention map (elements) computed at once. Browsers cap a WebGPU storage
/// binding at 128 MiB by default; 2^24 f32 is 64 MiB, leaving room for softmax temporaries.
pub const MAX_ATTENTION_ELEMENTS: usize = 1 << 24;

/// A parameter as a checkpoint names it, with how its layout differs from ours.
pub enum ParamRef<'a> {
    D1(&'a mut Param<Tensor<1>>),
    D2(&'a mut Param<Tensor<2>>),
    D4(&'a mut Param<Tensor<4>>),
    /// A fixed (untrained) tensor.
    Buffer2(&'a mut Tensor<2>),
    /// A linear weight: `[in, out]` in burn, `[out, in]` in PyTorch checkpoints.
    LinearWeight(&'a mut Param<Tensor<2>>),
    /// Absolute positions `[1, g, g, C]`, resampled when the checkpoint's grid differs.
    PosEmbed(&'a mut Param<Tensor<4>>),
    /// Relative positions `[2s - 1, C]`, resampled when the checkpoint's span differs.
    RelPos(&'a mut Param<Tensor<2>>),
}

/// Called once per parameter with its checkpoint key.
pub type Visitor<'f> = dyn FnMut(&str, ParamRef<'_>) -> Result<(), WeightsError> + 'f;

/// Modules that name their parameters by SAM's checkpoint keys. One traversal serves
/// loading, saving and counting, so the key mapping is written once.
pub trait NamedParams {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError>;
}

impl NamedParams for Linear {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        f(
            &format!("{prefix}.weight"),
            ParamRef::LinearWeight(&mut self.weight),
        )?;
        if let Some(b) = self.bias.as_mut() {
            f(&format!("{prefix}.bias"), ParamRef::D1(b))?;
        }
        Ok(())
    }
}

impl NamedParams for Conv2d {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        f(&format!("{prefix}.weight"), ParamRef::D4(&mut self.weight))?;
        if let Some(b) = self.bias.as_mut() {
            f(&format!("{prefix}.bias"), ParamRef::D1(b))?;
        }
        Ok(())
    }
}

/// A 2x2, stride-2 transposed convolution (the decoder's upscaling), computed as one
/// matmul: each input pixel maps linearly to its own 2x2 output block. Same weights and
/// result as `ConvTranspose2d`, without its scatter, and channels-last so that the
/// decoder's image tokens go in without a transpose.
#[derive(Module, Debug)]
pub struct UpConv2x2 {
    /// `[in, out, 2, 2]`, PyTorch's ConvTranspose2d layout.
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
}

impl UpConv2x2 {
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> Self {
        let bound = 1.0 / ((c_out * 4) as f64).sqrt();
        Self {
            weight: Param::from_tensor(Tensor::random(
                [c_in, c_out, 2, 2],
                burn::tensor::Distribution::Uniform(-bound, bound),
                device,
            )),
            bias: Param::from_tensor(Tensor::zeros([c_out], device)),
        }
    }

    /// Pixels `[B, P, C_in]`, in any order, → `[B, P, 4, C_out]`: each pixel's 2x2 output
    /// block, (dy, dx) in raster order.
    pub fn forward_pixels(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, p, c] = x.dims();
        let [_, o, _, _] = self.weight.dims();
        let w = self
            .weight
            .val()
            .permute([0, 2, 3, 1]) // [C_in, dy, dx, O]
            .reshape([1, c, 4 * o]);
        x.matmul(w).reshape([b, p, 4, o]) + self.bias.val().reshape([1, 1, 1, o])
    }
}

/// `Conv2d::forward` as one matmul, for the encoder's two kinds of convolution: patchify
/// (stride = kernel, no padding) and "same" (stride 1, padding k/2). burn-ndarray's direct
/// convolution is an order of magnitude slower than its matmul for these shapes, and the
/// backward pass of slices and a matmul is cheap everywhere. Other shapes, and backends with
/// a faster convolution of their own (LibTorch), use `forward`; on Flex at inference a 3 × 3
/// "same" convolution goes to [`super::kernels::conv3x3`] (Winograd) first.
pub fn conv2d_matmul(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if crate::backend::prefers_native_conv(&x.device()) {
        return conv.forward(x);
    }
    if let Some(y) = super::kernels::conv3x3(conv, &x) {
        return y;
    }
    let [o, c, kh, kw] = conv.weight.dims();
    let [b, _, h, w] = x.dims();
    let stride = conv.stride;
    let w_t = conv.weight.val().reshape([o, c * kh * kw]).transpose();
    let (cols, oh, ow) = if kh == kw && stride == [kh, kw] && h % kh == 0 && w % kw == 0 {
        let (gh, gw) = (h / kh, w / kw);
        let cols = x
            .reshape([b, c, gh, kh, gw, kw])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b * gh * gw, c * kh * kw]);
        (cols, gh, gw)
    } else if kh == kw
        && kh % 2 == 1
        && stride == [1, 1]
        && conv.dilation == [1, 1]
        && is_same(conv)
    {
        let p = kh / 2;
        let padded = if p > 0 {
            x.pad(
                [(0, 0), (0, 0), (p, p), (p, p)],
                burn::tensor::ops::PadMode::Constant(0.0),
            )
        } else {
            x
        };
        let shifts: Vec<Tensor<4>> = (0..kh)
            .flat_map(|dy| (0..kw).map(move |dx| (dy, dx)))
            .map(|(dy, dx)| padded.clone().slice([0..b, 0..c, dy..dy + h, dx..dx + w]))
            .collect();
        let cols = Tensor::stack::<5>(shifts, 2) // [B, C, k*k, H, W]
            .permute([0, 3, 4, 1, 2])
            .reshape([b * h * w, c * kh * kw]);
        (cols, h, w)
    } else {
        return conv.forward(x);
    };
    let y = cols.matmul(w_t).reshape([b, oh, ow, o]);
    let y = match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, 1, 1, o]),
        None => y,
    };
    y.permute([0, 3, 1, 2])
}

fn is_same(conv: &Conv2d) -> bool {
    let [_, _, k, _] = conv.weight.dims();
    matches!(conv.padding, burn::nn::PaddingConfig2d::Explicit(t, l, b, r)
        if [t, l, b, r] == [k / 2; 4])
        || matches!(conv.padding, burn::nn::PaddingConfig2d::Same)
}

impl NamedParams for UpConv2x2 {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        f(&format!("{prefix}.weight"), ParamRef::D4(&mut self.weight))?;
        f(&format!("{prefix}.bias"), ParamRef::D1(&mut self.bias))
    }
}

impl NamedParams for LayerNorm {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        f(&format!("{prefix}.weight"), ParamRef::D1(&mut self.gamma))?;
        if let Some(b) = self.beta.as_mut() {
            f(&format!("{prefix}.bias"), ParamRef::D1(b))?;
        }
        Ok(())
    }
}

impl<M: NamedParams> NamedParams for Vec<M> {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        for (i, m) in self.iter_mut().enumerate() {
            m.visit_named(&format!("{prefix}.{i}"), f)?;
        }
        Ok(())
    }
}

/// Channel-wise LayerNorm on `[B, C, H, W]` (eps 1e-6), as in SAM's neck and decoder.
#[derive(Module, Debug)]
pub struct LayerNorm2d {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
}

impl LayerNorm2d {
    const EPS: f64 = 1e-6;

    pub fn new(channels: usize, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([channels], device)),
            bias: Param::from_tensor(Tensor::zeros([channels], device)),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.normalise(x, 1)
    }

    /// The same normalisation, channels-last: over the last axis of any tensor.
    pub fn forward_last<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.normalise(x, D - 1)
    }

    fn normalise<const D: usize>(&self, x: Tensor<D>, axis: usize) -> Tensor<D> {
        let u = x.clone().mean_dim(axis);
        let xc = x - u;
        let s = xc.clone().powi_scalar(2).mean_dim(axis);
        let x = xc / (s + Self::EPS).sqrt();
        let mut shape = [1; D];
        shape[axis] = self.weight.dims()[0];
        x * self.weight.val().reshape(shape) + self.bias.val().reshape(shape)
    }
}

impl NamedParams for LayerNorm2d {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        f(&format!("{prefix}.weight"), ParamRef::D1(&mut self.weight))?;
        f(&format!("{prefix}.bias"), ParamRef::D1(&mut self.bias))
    }
}

/// Activation of an [`MlpBlock`]: GELU in the image encoder, ReLU in the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Gelu,
    Relu,
}

/// Two linear layers with an activation between (`lin1`, `lin2` in SAM's checkpoints).
#[derive(Module, Debug)]
pub struct MlpBlock {
    pub lin1: Linear,
    pub lin2: Linear,
    #[module(skip)]
    pub act: Activation,
}

impl MlpBlock {
    pub fn new(dim: usize, hidden: usize, act: Activation, device: &Device) -> Self {
        Self {
            lin1: LinearConfig::new(dim, hidden).init(device),
            lin2: LinearConfig::new(hidden, dim).init(device),
            act,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let h = self.lin1.forward(x);
        let h = match self.act {
            Activation::Gelu => gelu(h),
            Activation::Relu => relu(h),
        };
        self.lin2.forward(h)
    }
}

impl NamedParams for MlpBlock {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.lin1.visit_named(&format!("{prefix}.lin1"), f)?;
        self.lin2.visit_named(&format!("{prefix}.lin2"), f)
    }
}

/// The decoder's `num_layers`-deep MLP with ReLU between layers (`layers.{i}`).
#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub sigmoid_output: bool,
}

impl Mlp {
    pub fn new(
        input: usize,
        hidden: usize,
        output: usize,
        num_layers: usize,
        device: &Device,
    ) -> Self {
        let layers = (0..num_layers)
            .map(|i| {
                let d_in = if i == 0 { input } else { hidden };
                let d_out = if i + 1 == num_layers { output } else { hidden };
                LinearConfig::new(d_in, d_out).init(device)
            })
            .collect();
        Self {
            layers,
            sigmoid_output: false,
        }
    }

    pub fn forward<const D: usize>(&self, mut x: Tensor<D>) -> Tensor<D> {
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i + 1 < n {
                x = relu(x);
            }
        }
        if self.sigmoid_output {
            x = sigmoid(x);
        }
        x
    }
}

impl NamedParams for Mlp {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.layers.visit_named(&format!("{prefix}.layers"), f)
    }
}

/// `softmax(q k^T + bias) v` over `[N, Lq, C]` inputs, in pieces of at most
/// [`MAX_ATTENTION_ELEMENTS`] so that no attention map outgrows a browser GPU buffer.
///
/// `q` must already carry the 1/sqrt(d) scale. `bias(n0, n1, q0, q1)` returns the
/// relative-position bias for that block (items `n0..n1`, queries `q0..q1`), or `None`.
pub(crate) fn chunked_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    bias: &dyn Fn(usize, usize, usize, usize) -> Option<RelPosBias>,
) -> Tensor<3> {
    let [n, lq, _] = q.dims();
    let lk = k.dims()[1];
    let per_item = lq * lk;
    let attend = |n0: usize, n1: usize, q0: usize, q1: usize| {
        let qc = q.clone().slice([n0..n1, q0..q1]);
        let kc = k.clone().narrow(0, n0, n1 - n0);
        let scores = qc.matmul(kc.swap_dims(1, 2)); // [n, q, Lk]
        attention_probs(scores, bias(n0, n1, q0, q1)).matmul(v.clone().narrow(0, n0, n1 - n0))
    };
    if n * per_item <= MAX_ATTENTION_ELEMENTS {
        return attend(0, n, 0, lq);
    }
    let mut outs = Vec::new();
    if per_item <= MAX_ATTENTION_ELEMENTS {
        let step = MAX_ATTENTION_ELEMENTS / per_item;
        for n0 in (0..n).step_by(step) {
            outs.push(attend(n0, (n0 + step).min(n), 0, lq));
        }
        return Tensor::cat(outs, 0);
    }
    let rows = (MAX_ATTENTION_ELEMENTS / lk).max(1);
    for n0 in 0..n {
        let mut row_outs = Vec::new();
        for q0 in (0..lq).step_by(rows) {
            row_outs.push(attend(n0, n0 + 1, q0, (q0 + rows).min(lq)));
        }
        outs.push(Tensor::cat(row_outs, 1));
    }
    Tensor::cat(outs, 0)
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;

    #[test]
    fn conv_as_matmul_equals_burns_convolution() {
        use burn::nn::conv::Conv2dConfig;
        use burn::nn::PaddingConfig2d;
        let device = crate::backend::cpu();
        let x = Tensor::<4>::random(
            [2, 5, 12, 12],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let convs = [
            Conv2dConfig::new([5, 7], [4, 4])
                .with_stride([4, 4])
                .init(&device),
            Conv2dConfig::new([5, 7], [1, 1]).init(&device),
            Conv2dConfig::new([5, 7], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(&device),
        ];
        for conv in &convs {
            let want = conv.forward(x.clone());
            let got = conv2d_matmul(conv, x.clone());
            assert_eq!(got.dims(), want.dims());
            let err: f32 = (got - want).abs().max().into_scalar();
            assert!(err < 1e-4, "max error {err}");
        }
    }
    use burn::nn::conv::ConvTranspose2dConfig;
    use burn::tensor::Distribution;

    #[test]
    fn up_conv_equals_burns_transposed_convolution() {
        let device = crate::backend::cpu();
        let reference = ConvTranspose2dConfig::new([6, 3], [2, 2])
            .with_stride([2, 2])
            .init(&device);
        let up = UpConv2x2 {
            weight: Param::from_tensor(reference.weight.val()),
            bias: Param::from_tensor(reference.bias.as_ref().map(|b| b.val()).unwrap()),
        };
        let x = Tensor::<4>::random([2, 6, 5, 7], Distribution::Normal(0.0, 1.0), &device);
        let pixels = x.clone().permute([0, 2, 3, 1]).reshape([2, 35, 6]);
        let a = up
            .forward_pixels(pixels)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b = reference
            .forward(x)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(a.len(), 2 * 3 * 10 * 14);
        // a: [n, y, x, dy, dx, o]; b: [n, o, 2y + dy, 2x + dx]
        for (i, p) in a.iter().enumerate() {
            let (o, dx, dy) = (i % 3, i / 3 % 2, i / 6 % 2);
            let (px, py, n) = (i / 12 % 7, i / 84 % 5, i / 420);
            let q = b[((n * 3 + o) * 10 + 2 * py + dy) * 14 + 2 * px + dx];
            assert!((p - q).abs() < 1e-5, "{i}: {p} vs {q}");
        }
    }

    #[test]
    fn channels_last_layer_norm_equals_the_channel_norm() {
        let device = crate::backend::cpu();
        let mut ln = LayerNorm2d::new(5, &device);
        ln.weight =
            Param::from_tensor(Tensor::random([5], Distribution::Normal(1.0, 0.5), &device));
        ln.bias = Param::from_tensor(Tensor::random([5], Distribution::Normal(0.0, 0.5), &device));
        let x = Tensor::<4>::random([2, 5, 3, 4], Distribution::Normal(0.5, 2.0), &device);
        let want = ln.forward(x.clone()).permute([0, 2, 3, 1]);
        let got = ln.forward_last(x.permute([0, 2, 3, 1]));
        let err: f32 = (got - want).abs().max().into_scalar();
        assert!(err < 1e-5, "max error {err}");
    }
}
