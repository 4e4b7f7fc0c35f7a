//! Why a segmentation could not be made.

use crate::data::DataError;
use crate::model::predictor::PredictError;

/// Why a segmentation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error("invalid prompt: {0}")]
    Prompt(String),
}
