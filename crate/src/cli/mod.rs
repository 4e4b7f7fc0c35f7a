//! Subcommands of the `brainsam` binary; each file holds its arguments and its `run`.

pub mod bench;
pub mod calibrate;
pub mod choices;
pub mod common;
pub mod evaluate;
pub mod metrics;
pub mod model;
pub mod segment;
pub mod synth;
#[cfg(feature = "train")]
pub mod train;
pub mod train_log;
