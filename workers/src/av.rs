//! What this crate leaves to FFmpeg, and so to `satchel-workers-av`: the audio and video
//! pipelines and the H.264 encoder behind an animated picture's `animation` variant.
//!
//! FFmpeg's libraries are about 170 shared objects, and loading them costs a process about
//! 40 ms of CPU before it does anything; stills never need them. So this crate does not link
//! FFmpeg. A caller that has `satchel-workers-av` hands its [`Av`] to [`crate::process`]; one
//! without it (the service's own binary, `satchel process` on a photo) processes stills alone;
//! what it cannot fails with [`WorkerError::NeedsAv`] before anything is decoded or written, so
//! that the caller can hand the input to a process that has FFmpeg.

use crate::preset::{AnimationPreset, AudioPreset};
use crate::{Presets, Processed, WorkerError};
use image::RgbaImage;
use std::path::Path;

/// The FFmpeg-backed pipelines and encoder (`satchel_workers_av::FFMPEG`).
pub trait Av {
    /// The audio pipeline: one `voice` variant, the duration and a waveform.
    fn audio(
        &self,
        input: &Path,
        preset: &AudioPreset,
        out_dir: &Path,
    ) -> Result<Processed, WorkerError>;

    /// The video pipeline: the H.264/AAC `video` variant, a poster and its stills.
    fn video(
        &self,
        input: &Path,
        presets: &Presets,
        out_dir: &Path,
    ) -> Result<Processed, WorkerError>;

    /// An H.264 MP4 at `path` for frames of `canvas` size, scaled to `size` (even sides).
    fn animation(
        &self,
        path: &Path,
        canvas: (u32, u32),
        size: (u32, u32),
        preset: &AnimationPreset,
    ) -> Result<Box<dyn AnimationEncoder>, WorkerError>;
}

/// An animation being written, frame by frame.
pub trait AnimationEncoder {
    /// Adds one opaque frame of the canvas size, shown from `start_ms` for `duration_ms`.
    fn push(
        &mut self,
        frame: &RgbaImage,
        start_ms: f64,
        duration_ms: f64,
    ) -> Result<(), WorkerError>;

    /// Drains the encoder and writes the file's index.
    fn finish(self: Box<Self>) -> Result<(), WorkerError>;
}

/// What a job that needs FFmpeg fails with in a process without it.
pub(crate) fn missing(what: &str) -> WorkerError {
    WorkerError::NeedsAv(format!(
        "{what} needs FFmpeg, which this process does not link (satchel-transform does)"
    ))
}
