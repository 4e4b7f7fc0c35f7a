//! Parity with Meta's reference on wgpu (tolerance 1e-3). Its own test binary: GPU
//! runtimes are kept out of the CPU tests' process.
#![cfg(feature = "wgpu")]
mod common;

#[test]
fn parity_wgpu_matches_meta_reference() {
    let device = pollster::block_on(brainsam::backend::gpu())
        .expect("a wgpu adapter (install mesa-vulkan-drivers for a CPU one)");
    common::run_all(&device, 1e-3);
}
