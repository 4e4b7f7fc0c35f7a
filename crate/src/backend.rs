//! Devices by compiled-in backend.

use burn::prelude::Device;

/// The CPU device: the fastest CPU backend this build has. LibTorch (PyTorch's kernels) with
/// the native `libtorch` feature, else Flex; measured side by side in docs/speed.md.
#[cfg(all(feature = "cpu", not(feature = "libtorch")))]
pub fn cpu() -> Device {
    flex()
}

/// See the other `cpu`: this build has LibTorch.
#[cfg(feature = "libtorch")]
pub fn cpu() -> Device {
    libtorch()
}

/// burn's Flex: pure Rust, SIMD on every core natively and SIMD128 in the browser.
#[cfg(feature = "cpu")]
pub fn flex() -> Device {
    Device::flex()
}

/// burn's NdArray CPU device, deprecated upstream in favour of Flex; kept for
/// side-by-side benchmarks and `--backend ndarray` for one release.
#[cfg(feature = "ndarray")]
#[allow(deprecated)]
pub fn ndarray() -> Device {
    Device::ndarray()
}

/// LibTorch's CPU device: PyTorch 2.9's kernels through tch (burn marks it deprecated; kept
/// while it is the fastest CPU backend we measure).
#[cfg(feature = "libtorch")]
#[allow(deprecated)]
pub fn libtorch() -> Device {
    Device::libtorch()
}

/// Whether convolutions should run as the backend's own op rather than our single-matmul
/// form ([`crate::model::common::conv2d_matmul`]): LibTorch's (oneDNN's) convolution and its
/// backward beat the matmul form (bundled LoRA step ~10 % faster, docs/speed.md); Flex's and
/// NdArray's direct convolutions do not.
pub fn prefers_native_conv(device: &Device) -> bool {
    #[cfg(feature = "libtorch")]
    if matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::LibTorch(_)
    ) {
        return true;
    }
    let _ = device;
    false
}

/// Whether `device` is Flex (not wrapped for autodiff), where [`crate::model::kernels`]
/// replace burn's softmax, GELU and 3 × 3 convolution at inference.
pub fn is_flex(device: &Device) -> bool {
    #[cfg(feature = "cpu")]
    if let burn::backend::DispatchDevice::Flex(_) = device.as_dispatch() {
        return true;
    }
    let _ = device;
    false
}

/// The default wgpu device: Vulkan, Metal or DX12 natively, WebGPU in a browser.
#[cfg(feature = "wgpu")]
pub async fn gpu() -> Result<Device, String> {
    Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("{e:?}"))
}
