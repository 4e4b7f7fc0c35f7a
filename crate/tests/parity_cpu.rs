//! Parity with Meta's reference on the CPU backend (tolerance 1e-4).
mod common;

#[test]
fn parity_cpu_matches_meta_reference() {
    common::run_all(&brainsam::backend::cpu(), 1e-4);
}
