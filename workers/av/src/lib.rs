//! satchel's FFmpeg pipelines: audio (an Opus voice note and its waveform), video (H.264/AAC
//! and a poster) and the H.264 encoder behind an animated picture's `animation` variant.
//!
//! They are a crate of their own so that only the process that runs them links FFmpeg's
//! libraries (about 170 shared objects, ~40 ms of CPU to load): `satchel-transform`, where
//! every job runs, and not the service's own `satchel` binary. Like the stills' crate
//! (`satchel-workers`), nothing here speaks HTTP, S3 or SQL: a file and a preset in, files and
//! metadata out. [`FFMPEG`] is what [`satchel_workers::process`] takes to run them, and
//! [`process`] does that.

pub mod audio;
mod av;
mod mp4;
pub mod video;

use satchel_workers::av::{AnimationEncoder, Av};
use satchel_workers::preset::{AnimationPreset, AudioPreset};
use satchel_workers::MediaKind;
pub(crate) use satchel_workers::{
    preset, Metadata, Presets, Processed, Step, Variant, WorkerError,
};
use std::path::Path;

/// The FFmpeg-backed side of every pipeline.
pub struct Ffmpeg;

/// What [`satchel_workers::process`] takes to run every kind.
pub const FFMPEG: Ffmpeg = Ffmpeg;

impl Av for Ffmpeg {
    fn audio(
        &self,
        input: &Path,
        preset: &AudioPreset,
        out_dir: &Path,
    ) -> Result<Processed, WorkerError> {
        audio::process(input, preset, out_dir)
    }

    fn video(
        &self,
        input: &Path,
        presets: &Presets,
        out_dir: &Path,
    ) -> Result<Processed, WorkerError> {
        video::process(input, presets, out_dir)
    }

    fn animation(
        &self,
        path: &Path,
        canvas: (u32, u32),
        size: (u32, u32),
        preset: &AnimationPreset,
    ) -> Result<Box<dyn AnimationEncoder>, WorkerError> {
        Ok(Box::new(mp4::Mp4::create(path, canvas, size, preset)?))
    }
}

/// [`satchel_workers::process`] with FFmpeg: every kind, animations included.
pub fn process(
    kind: MediaKind,
    input: &Path,
    presets: &Presets,
    out_dir: &Path,
) -> Result<Processed, WorkerError> {
    satchel_workers::process(kind, input, presets, out_dir, Some(&FFMPEG))
}
