//! satchel's media workers: pure transforms from an input file and a preset to output files.
//!
//! Nothing in this crate speaks HTTP, S3 or SQL. A caller hands over a path to a local file that
//! has already been stored and sniffed, a [`Presets`] value and an empty output directory; it gets
//! back the files written there and the metadata to record. That keeps every transform testable
//! and benchmarkable on its own (`satchel process` and `bench/benches/` call the same entry point).

pub mod av;
pub mod deadline;
pub mod error;
pub mod image;
pub mod output;
pub mod preset;

pub use av::Av;
pub use deadline::Deadline;
pub use error::{Code, WorkerError, CODES};
pub use output::{Metadata, Placeholder, Processed, Step, Variant};
pub use preset::Presets;

use std::path::Path;

/// The kinds of media that have a pipeline. `file` media are never processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Image,
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// Runs the pipeline for `kind` on `input`, writing every variant into `out_dir`. Audio, video
/// and the `animation` variant of an animated picture need `av`; without it they fail with
/// [`WorkerError::NeedsAv`] (code `unsupported_codec`) before anything is decoded.
///
/// Blocking and CPU-bound: async callers run it on a blocking thread. On error, files already
/// written to `out_dir` are the caller's to discard (it owns the directory).
pub fn process(
    kind: MediaKind,
    input: &Path,
    presets: &Presets,
    out_dir: &Path,
    av: Option<&dyn Av>,
) -> Result<Processed, WorkerError> {
    match (kind, av) {
        (MediaKind::Image, av) => image::process(input, &presets.image, out_dir, av),
        (MediaKind::Audio, Some(av)) => av.audio(input, &presets.audio, out_dir),
        (MediaKind::Video, Some(av)) => av.video(input, presets, out_dir),
        (kind, None) => Err(av::missing(kind.as_str())),
    }
}
