//! Devices by compiled-in backend.

use burn::prelude::Device;

/// The CPU device (NdArray).
// burn 0.22 marks NdArray deprecated in favour of Flex; NdArray is what the wasm CPU
// fallback and our parity numbers were verified on, so it stays until Flex is measured.
#[cfg(feature = "ndarray")]
#[allow(deprecated)]
pub fn cpu() -> Device {
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
