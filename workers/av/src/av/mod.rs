//! What the FFmpeg pipelines (audio, video, animated images) share: one-time set-up, a
//! hardened way to open an input ([`input`]), error mapping and libx264's options; the job
//! deadline and the size an encode fits are the stills' crate's.

pub mod input;

use crate::WorkerError;
use ffmpeg_next as ffmpeg;
pub use satchel_workers::image::resize::fit_box;
pub use satchel_workers::Deadline;
use std::sync::Once;

/// FFmpeg refuses any single allocation over this. It is process-wide (FFmpeg has no
/// per-context limit), so it is a ceiling for every job rather than a preset key; per-job
/// bounds come from the pixel, duration and frame limits checked before decoding.
const MAX_SINGLE_ALLOC: usize = 1 << 30;

/// Sets FFmpeg up once per process: registers nothing (FFmpeg ≥ 4 needs no registration), keeps
/// its logging off stderr (our errors carry the reason) and caps single allocations.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::log::set_level(ffmpeg::log::Level::Fatal);
        // SAFETY: a plain setter on a global, called once before any job allocates.
        unsafe { ffmpeg::ffi::av_max_alloc(MAX_SINGLE_ALLOC) };
    });
}

/// Maps an FFmpeg error met while *reading or decoding* the input: the input's fault.
pub fn decode_err(what: &str) -> impl Fn(ffmpeg::Error) -> WorkerError + '_ {
    move |e| WorkerError::DecodeFailed(format!("{what}: {e}"))
}

/// Maps an FFmpeg error met while *encoding or writing* an output.
pub fn encode_err(what: &str) -> impl Fn(ffmpeg::Error) -> WorkerError + '_ {
    move |e| WorkerError::EncodeFailed(format!("{what}: {e}"))
}

/// libx264's options: its preset, CRF and (0: its own choice) threads.
pub(crate) fn x264_options(preset: &str, crf: u8, threads: u32) -> ffmpeg::Dictionary<'static> {
    let mut options = ffmpeg::Dictionary::new();
    options.set("preset", preset);
    options.set("crf", &crf.to_string());
    if threads > 0 {
        options.set("threads", &threads.to_string());
    }
    options
}
