//! The image pipeline. (Being written.)
use crate::{preset::ImagePreset, Processed, WorkerError};
use std::path::Path;

pub fn process(_input: &Path, _preset: &ImagePreset, _out_dir: &Path) -> Result<Processed, WorkerError> {
    Err(WorkerError::DecodeFailed("image pipeline not written yet".into()))
}
