//! Fuzz target: the NIfTI reader must return Ok or a typed error for any bytes, never panic.
//! Run: `cd crate/fuzz && cargo +nightly fuzz run nifti_reader -- -max_total_time=300`
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../src/data/mod.rs"]
mod data;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = data::nifti::read_header(bytes);
    let _ = data::nifti::read_labels(bytes);
    if let Ok(loaded) = data::nifti::read_image(bytes) {
        let v = loaded.volume;
        // Exercise the downstream path on small volumes only (keeps iterations fast).
        if v.data.len() <= 1 << 16 {
            if let Ok((c, o)) = data::orient::to_canonical(&v) {
                let _ = o.from_canonical(&c);
                let _ = data::slicing::Normalizer::robust(&c);
                for axis in 0..3 {
                    let _ = data::slicing::slice(&c, axis, c.dims[axis] / 2);
                }
            }
            let _ = data::nifti::write_image(&v, false);
        }
    }
});
