//! Subcommands of the `brainsam` binary; each file holds its arguments and its `run`.

pub mod metrics;
pub mod model;
pub mod synth;
