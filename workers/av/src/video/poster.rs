//! Choosing and writing the `poster`: a frame that shows what the video is about, not the
//! black or faded frame many recordings start with.

use crate::preset::{ImageFormat, PosterPreset};
use crate::{Variant, WorkerError};
use ffmpeg::software::scaling;
use ffmpeg_next as ffmpeg;
use image::{DynamicImage, RgbImage};
use std::path::Path;

/// Frames later than this are not considered: a poster should come from the start.
const LOOK_SECONDS: f64 = 10.0;

/// Watches decoded frames go by and keeps the first representative one.
pub struct Picker {
    /// Frames before this time are only a fallback (fades in, slates, a black first frame).
    settle_seconds: f64,
    best: Option<(f64, ffmpeg::frame::Video)>,
    done: bool,
}

impl Picker {
    pub fn new(duration_ms: u64) -> Self {
        Picker {
            settle_seconds: (duration_ms as f64 / 1000.0 * 0.1).min(1.0),
            best: None,
            done: false,
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }

    /// Offers a frame shown at `seconds`.
    pub fn offer(&mut self, frame: &ffmpeg::frame::Video, seconds: f64) {
        if self.done {
            return;
        }
        let (mean, spread) = luma_stats(frame);
        let representative = (32.0..=224.0).contains(&mean) && spread >= 16.0;
        // Detail, minus a penalty for being very dark or very bright.
        let score = spread - (mean - 128.0).abs().max(96.0) + 96.0;
        if self.best.as_ref().is_none_or(|(best, _)| score > *best) {
            self.best = Some((score, frame.clone()));
        }
        if (representative && seconds >= self.settle_seconds) || seconds > LOOK_SECONDS {
            if representative {
                self.best = Some((score, frame.clone()));
            }
            self.done = true;
        }
    }

    /// The chosen frame as RGB, scaled to fit `max_edge` (never upscaled).
    pub fn into_image(self, max_edge: u32) -> Result<Option<DynamicImage>, WorkerError> {
        let Some((_, frame)) = self.best else {
            return Ok(None);
        };
        let (w, h) = fit_edge(frame.width(), frame.height(), max_edge);
        let mut scaler = scaling::Context::get(
            frame.format(),
            frame.width(),
            frame.height(),
            ffmpeg::format::Pixel::RGB24,
            w,
            h,
            scaling::Flags::BICUBIC,
        )
        .map_err(|e| WorkerError::EncodeFailed(format!("poster scaler: {e}")))?;
        let mut rgb = ffmpeg::frame::Video::empty();
        scaler
            .run(&frame, &mut rgb)
            .map_err(|e| WorkerError::EncodeFailed(format!("poster scaling: {e}")))?;
        let stride = rgb.stride(0);
        let data = rgb.data(0);
        let row = w as usize * 3;
        let mut pixels = Vec::with_capacity(row * h as usize);
        for y in 0..h as usize {
            pixels.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        let image = RgbImage::from_raw(w, h, pixels)
            .ok_or_else(|| WorkerError::EncodeFailed("poster buffer size".into()))?;
        Ok(Some(DynamicImage::ImageRgb8(image)))
    }
}

/// Mean and standard deviation of the first plane (luma for every YUV format), sampled on a
/// sparse grid: enough to tell a black or flat frame from a picture, cheaply.
fn luma_stats(frame: &ffmpeg::frame::Video) -> (f64, f64) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    let data = frame.data(0);
    let (mut n, mut sum, mut sum_sq) = (0f64, 0f64, 0f64);
    for y in (0..h).step_by(4) {
        let Some(row) = data.get(y * stride..y * stride + w) else {
            break;
        };
        for &v in row.iter().step_by(4) {
            let v = f64::from(v);
            n += 1.0;
            sum += v;
            sum_sq += v * v;
        }
    }
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let mean = sum / n;
    (mean, (sum_sq / n - mean * mean).max(0.0).sqrt())
}

fn fit_edge(w: u32, h: u32, max_edge: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= max_edge || long == 0 {
        return (w.max(1), h.max(1));
    }
    let scale = f64::from(max_edge) / f64::from(long);
    (
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    )
}

pub fn write(
    image: &DynamicImage,
    preset: &PosterPreset,
    out_dir: &Path,
) -> Result<Variant, WorkerError> {
    let (w, h) = (image.width(), image.height());
    // The stills' own encoders and settings (they take the RGB frame as it is).
    use satchel_workers::image::encode::{encode, WebpTuning};
    let webp = WebpTuning::of(preset.webp_method, preset.webp_sns);
    let bytes = encode(image, preset.format, preset.quality, webp)?;
    let name = match preset.format {
        ImageFormat::Jpeg => "poster.jpg",
        ImageFormat::Webp => "poster.webp",
    };
    let path = out_dir.join(name);
    std::fs::write(&path, &bytes)?;
    Ok(Variant {
        name: "poster".into(),
        path,
        mime: preset.format.mime().into(),
        size: bytes.len() as u64,
        width: Some(w),
        height: Some(h),
        duration_ms: None,
    })
}
