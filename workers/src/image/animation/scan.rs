//! Is this picture an animation, and may it be played? Decided from headers and frame
//! descriptors only, before any pixel is decoded, so that a frame bomb (thousands of frames
//! on a large canvas in a few kilobytes) is refused in milliseconds and a few kilobytes of
//! memory.
//!
//! - GIF: every frame descriptor is read with LZW decoding switched off (`gif`'s
//!   `skip_frame_decoding`): the real frame count, each frame's rectangle and delay.
//! - APNG: the `acTL` chunk's frame count (the decoder counts again while compositing).
//! - WebP: the `ANIM`/`ANMF` chunks' frame count and summed durations (`image-webp` reads
//!   them when it opens the file).

use super::delay_ms;
use crate::preset::ImagePreset;
use crate::WorkerError;
use image::ImageFormat;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// An animation found by [`scan`], within every limit its headers let us check.
#[derive(Debug, Clone)]
pub struct Scan {
    pub format: ImageFormat,
    /// The canvas, as stored (orientation not applied).
    pub width: u32,
    pub height: u32,
    /// Frames as declared (GIF: as counted).
    pub frames: u64,
}

/// `None` for a still picture (one frame, or a format that cannot animate). Headers that do not
/// parse are left to the still decoder, which reports them; a GIF whose frames break off after
/// the first counts only the frames before the break, as browsers play it.
pub fn scan(input: &Path, preset: &ImagePreset) -> Result<Option<Scan>, WorkerError> {
    let mut reader = BufReader::new(File::open(input)?);
    // What is not a picture is the still decoder's to report.
    let Ok(format) = crate::image::decode::sniff(&mut reader) else {
        return Ok(None);
    };
    drop(reader);
    let found = match format {
        ImageFormat::Gif => scan_gif(input, preset)?,
        ImageFormat::Png => scan_png(input)?,
        ImageFormat::WebP => scan_webp(input, preset)?,
        _ => None,
    };
    let Some(scan) = found.filter(|s| s.frames > 1) else {
        return Ok(None);
    };
    Limits::new(preset, scan.width, scan.height)?.frames(scan.frames)?;
    Ok(Some(scan))
}

/// The limits of one animation, checked as frames are counted (here) and decoded (`frames`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    canvas: u64,
    max_frames: u64,
    max_total_pixels: u64,
    max_duration_ms: f64,
}

impl Limits {
    /// Refuses a canvas over the stills' limits or over `max_frame_pixels`.
    pub fn new(preset: &ImagePreset, width: u32, height: u32) -> Result<Self, WorkerError> {
        crate::image::decode::check_size(width, height, preset)?;
        let canvas = u64::from(width) * u64::from(height);
        let animation = &preset.animation;
        if canvas > animation.max_frame_pixels {
            return Err(WorkerError::TooManyPixels(format!(
                "an animation of {width}x{height} is over {} pixels a frame",
                animation.max_frame_pixels
            )));
        }
        Ok(Limits {
            canvas,
            max_frames: u64::from(preset.max_frames),
            max_total_pixels: animation.max_total_pixels,
            max_duration_ms: f64::from(animation.max_duration_s) * 1000.0,
        })
    }

    /// Refuses `count` frames when there are too many, or too many pixels over all of them.
    pub fn frames(&self, count: u64) -> Result<(), WorkerError> {
        if count > self.max_frames {
            return Err(WorkerError::TooManyPixels(format!(
                "an animation of over {} frames",
                self.max_frames
            )));
        }
        let total = count.saturating_mul(self.canvas);
        if total > self.max_total_pixels {
            return Err(WorkerError::TooManyPixels(format!(
                "{count} frames of {} pixels are over {} pixels in all",
                self.canvas, self.max_total_pixels
            )));
        }
        Ok(())
    }

    /// Refuses an animation that has lasted `ms` so far when that is over the limit.
    pub fn duration(&self, ms: f64) -> Result<(), WorkerError> {
        if ms > self.max_duration_ms {
            return Err(WorkerError::TooLong(format!(
                "an animation of over {} s",
                self.max_duration_ms / 1000.0
            )));
        }
        Ok(())
    }
}

/// Refuses one frame rectangle (a GIF's may differ from the canvas) over the frame limit.
fn frame_rectangle(preset: &ImagePreset, width: u16, height: u16) -> Result<(), WorkerError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > preset.animation.max_frame_pixels {
        return Err(WorkerError::TooManyPixels(format!(
            "a {width}x{height} frame is over {} pixels",
            preset.animation.max_frame_pixels
        )));
    }
    Ok(())
}

fn scan_gif(input: &Path, preset: &ImagePreset) -> Result<Option<Scan>, WorkerError> {
    let mut options = gif::DecodeOptions::new();
    options.skip_frame_decoding(true);
    let reader = BufReader::new(File::open(input)?);
    let Ok(mut decoder) = options.read_info(reader) else {
        return Ok(None);
    };
    let (width, height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let limits = match Limits::new(preset, width, height) {
        Ok(limits) => limits,
        // A still GIF over the animation's canvas limit is still a still: the still decoder
        // has its own limits. Only a second frame makes it an animation that cannot be played.
        Err(e) if has_second_frame(&mut decoder) => return Err(e),
        Err(_) => return Ok(None),
    };
    let mut frames = 0u64;
    let mut duration = 0.0;
    // The first frame alone is a still, which the still decoder bounds; from the second on
    // it is an animation's, held to the animation's limits.
    let mut first = Ok(());
    // A frame that does not parse ends the animation, as it ends a browser's.
    while let Ok(Some(frame)) = decoder.read_next_frame() {
        frames += 1;
        duration += delay_ms(f64::from(frame.delay) * 10.0);
        let rectangle = frame_rectangle(preset, frame.width, frame.height);
        if frames == 1 {
            first = rectangle;
            continue;
        }
        std::mem::replace(&mut first, Ok(()))?;
        rectangle?;
        limits.frames(frames)?;
        limits.duration(duration)?;
    }
    Ok(Some(Scan {
        format: ImageFormat::Gif,
        width,
        height,
        frames,
    }))
}

/// Whether a GIF has a second frame, read without decoding any.
fn has_second_frame<R: std::io::Read>(decoder: &mut gif::Decoder<R>) -> bool {
    let mut count = 0;
    while count < 2 && matches!(decoder.read_next_frame(), Ok(Some(_))) {
        count += 1;
    }
    count > 1
}

fn scan_png(input: &Path) -> Result<Option<Scan>, WorkerError> {
    let decoder = png::Decoder::new(BufReader::new(File::open(input)?));
    let Ok(reader) = decoder.read_info() else {
        return Ok(None);
    };
    let info = reader.info();
    let Some(control) = info.animation_control else {
        return Ok(None);
    };
    Ok(Some(Scan {
        format: ImageFormat::Png,
        width: info.width,
        height: info.height,
        frames: u64::from(control.num_frames),
    }))
}

fn scan_webp(input: &Path, preset: &ImagePreset) -> Result<Option<Scan>, WorkerError> {
    let Ok(decoder) = image_webp::WebPDecoder::new(BufReader::new(File::open(input)?)) else {
        return Ok(None);
    };
    if !decoder.is_animated() {
        return Ok(None);
    }
    let (width, height) = decoder.dimensions();
    let frames = u64::from(decoder.num_frames());
    if frames > 1 {
        // Delays only ever grow as played (see `delay_ms`), so the stored sum is a floor.
        Limits::new(preset, width, height)?.duration(decoder.loop_duration() as f64)?;
    }
    Ok(Some(Scan {
        format: ImageFormat::WebP,
        width,
        height,
        frames,
    }))
}
