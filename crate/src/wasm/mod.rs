//! The browser surface: one [`Engine`] (device, model, image session) exported with
//! wasm-bindgen, used by `www/worker.js`.
//!
//! This layer only validates and converts: the segmentation logic lives in
//! [`crate::segment`] and [`crate::data`], which are tested natively. Every error reaches
//! JavaScript as an `Error` with a readable message; GPU results are read back
//! asynchronously only (a browser cannot block on the GPU).

#[cfg(target_family = "wasm")]
mod convert;
#[cfg(target_family = "wasm")]
mod engine;
pub mod labels;
pub mod types;

#[cfg(target_family = "wasm")]
pub use engine::Engine;
#[cfg(target_family = "wasm")]
use wasm_bindgen::prelude::*;

/// Runs the static constructors once and shows Rust panic messages in the console instead
/// of a bare "unreachable".
#[cfg(target_family = "wasm")]
#[wasm_bindgen(start)]
pub fn start() {
    extern "C" {
        // Made by wasm-ld. Without a call to it in the input, wasm-ld wraps every export in
        // one (command-style exports): the constructors re-ran on each call into the
        // module, ~5 % of a refining click.
        fn __wasm_call_ctors();
    }
    // SAFETY: called once, first (wasm-bindgen's glue calls `start` right after
    // instantiation), as the constructors expect.
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
}

/// The 16 subcortical structures: `[{id, name, rgb, freesurfer}]`.
#[cfg(target_family = "wasm")]
#[wasm_bindgen(unchecked_return_type = "StructureInfo[]")]
pub fn structures() -> Result<JsValue, JsError> {
    let list: Vec<types::StructureInfo> = crate::data::SUBCORTICAL
        .iter()
        .map(types::StructureInfo::from)
        .collect();
    convert::to_js(&list)
}
