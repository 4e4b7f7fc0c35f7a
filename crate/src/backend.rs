//! Devices by compiled-in backend.

use burn::prelude::Device;

/// The CPU device: burn's Flex, natively (SIMD, every core) and in the browser (SIMD128).
#[cfg(feature = "cpu")]
pub fn cpu() -> Device {
    Device::flex()
}

/// burn's NdArray CPU device, deprecated upstream in favour of Flex; kept for
/// side-by-side benchmarks and `--backend ndarray` for one release.
#[cfg(feature = "ndarray")]
#[allow(deprecated)]
pub fn ndarray() -> Device {
    Device::ndarray()
}

/// The default wgpu device: Vulkan, Metal or DX12 natively, WebGPU in a browser.
#[cfg(feature = "wgpu")]
pub async fn gpu() -> Result<Device, String> {
    Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| format!("{e:?}"))
}
