//! What the FFmpeg pipelines (audio, video, animated images) share: one-time set-up, the job
//! deadline, a hardened way to open an input ([`input`]) and the size an encode fits.

pub mod input;

use crate::WorkerError;
use ffmpeg_next as ffmpeg;
use std::sync::Once;
use std::time::{Duration, Instant};

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

/// The wall-clock budget of one job. Checked between packets and frames and inside every read
/// of the input, so a hostile file cannot keep a worker busy past it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after_seconds(seconds: u32) -> Self {
        let budget = Duration::from_secs(u64::from(seconds.max(1)));
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    pub fn check(&self) -> Result<(), WorkerError> {
        if self.passed() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    pub fn error(&self) -> WorkerError {
        WorkerError::TimedOut(format!("over the {} s budget", self.budget.as_secs()))
    }
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

/// The largest even size with the same shape that fits `long` × `short` in the picture's own
/// orientation; never larger than the picture.
pub(crate) fn fit_box(w: u32, h: u32, long: u32, short: u32) -> (u32, u32) {
    let (box_w, box_h) = if w >= h { (long, short) } else { (short, long) };
    let scale = (f64::from(box_w) / f64::from(w))
        .min(f64::from(box_h) / f64::from(h))
        .min(1.0);
    let even = |x: f64| ((x.round() as u32) & !1).max(2);
    if scale >= 1.0 && (w | h) & 1 == 0 {
        return (w, h);
    }
    (even(f64::from(w) * scale), even(f64::from(h) * scale))
}

#[cfg(test)]
mod tests {
    use super::fit_box;

    #[test]
    fn fits_the_box_in_the_displayed_orientation_without_upscaling() {
        assert_eq!(fit_box(1920, 1080, 1280, 720), (1280, 720));
        assert_eq!(fit_box(1080, 1920, 1280, 720), (720, 1280));
        assert_eq!(fit_box(320, 240, 1280, 720), (320, 240));
        assert_eq!(fit_box(321, 241, 1280, 720), (320, 240));
        assert_eq!(fit_box(4000, 1000, 1280, 720), (1280, 320));
    }
}
