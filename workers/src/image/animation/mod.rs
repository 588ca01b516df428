//! The `animation` variant: an animated GIF, WebP or APNG as a muted H.264 MP4, the way chat
//! apps play them (a fraction of the GIF's size, and a `<video loop muted>` plays it).
//!
//! 1. [`scan`] decides from headers alone whether the picture animates and refuses what is over
//!    the preset's limits (frames, canvas, pixels over all frames, duration) before any pixel
//!    is decoded: a frame bomb fails with `too_many_pixels` in milliseconds.
//! 2. [`frames`] decodes and composites one frame at a time (the limits counted again), never
//!    holding more than the frame at hand.
//! 3. Transparent pixels are flattened onto white (MP4 has no alpha; most chat backgrounds
//!    and every web page a GIF was made for are light), and the [`Av`]'s encoder (libx264,
//!    in `satchel-workers-av`) scales each frame into `max_long_edge` × `max_short_edge` (even
//!    sides, never upscaled) and encodes it with its own timing: variable frame rate, no frame
//!    duplicated; a frame identical to the one before lengthens it instead of being encoded
//!    again.
//!
//! Timing is as browsers play it: a stored delay of 10 ms or less (a GIF's 0 or 1 centisecond)
//! lasts 100 ms, as in Chromium and Firefox, which do this for every format.

mod frames;
pub mod scan;

use crate::av::Av;
use crate::preset::ImagePreset;
use crate::Deadline;
use crate::{Variant, WorkerError};
use image::RgbaImage;
use std::path::Path;

pub use scan::{scan, Scan};

/// The variant's name.
pub const NAME: &str = "animation";

/// A frame's delay as browsers play it, from the stored one (both in milliseconds).
pub(crate) fn delay_ms(stored: f64) -> f64 {
    if stored <= 10.0 {
        100.0
    } else {
        stored
    }
}

/// Writes `animation.mp4` into `out_dir` from an animation [`scan`] found. `None` when fewer
/// than two frames decode after all (the rest broken off): the stills say all there is.
pub fn write(
    input: &Path,
    scan: &Scan,
    preset: &ImagePreset,
    out_dir: &Path,
    deadline: Deadline,
    av: &dyn Av,
) -> Result<Option<Variant>, WorkerError> {
    let mut frames = frames::Frames::open(input, scan, preset, deadline)?;
    let canvas = frames.displayed_size(scan);
    let animation = &preset.animation;
    let size = crate::image::resize::fit_box(
        canvas.0,
        canvas.1,
        animation.max_long_edge,
        animation.max_short_edge,
    );
    let path = out_dir.join(format!("{NAME}.mp4"));
    let mut mp4 = av.animation(&path, canvas, size, animation)?;
    let mut decoded = 0u64;
    let mut duration_ms = 0.0;
    // A frame that shows the same pixels as the one before (screen recordings are full of
    // them) only lengthens it: the same picture for the same time, for less work and fewer
    // bytes. So each frame is held until the next one differs.
    let mut held: Option<frames::Frame> = None;
    let mut held_raw: Vec<u8> = Vec::new();
    while let Some(mut frame) = frames.next_frame()? {
        decoded += 1;
        duration_ms = frame.start_ms + frame.duration_ms;
        if let Some(before) = held.as_mut().filter(|_| held_raw == *frame.image.as_raw()) {
            before.duration_ms += frame.duration_ms;
            continue;
        }
        held_raw.clone_from(frame.image.as_raw());
        flatten_onto_white(&mut frame.image);
        if let Some(before) = held.replace(frame) {
            mp4.push(&before.image, before.start_ms, before.duration_ms)?;
        }
    }
    if decoded < 2 {
        drop(mp4);
        std::fs::remove_file(&path)?;
        return Ok(None);
    }
    if let Some(last) = held {
        mp4.push(&last.image, last.start_ms, last.duration_ms)?;
    }
    mp4.finish()?;
    Ok(Some(Variant {
        name: NAME.into(),
        size: std::fs::metadata(&path)?.len(),
        path,
        mime: "video/mp4".into(),
        width: Some(size.0),
        height: Some(size.1),
        duration_ms: Some(duration_ms.round() as u64),
    }))
}

/// Composites every pixel over opaque white, in place (alpha is then ignored).
fn flatten_onto_white(image: &mut RgbaImage) {
    for pixel in image.pixels_mut() {
        let alpha = u32::from(pixel[3]);
        if alpha == 255 {
            continue;
        }
        let white = 255 * (255 - alpha);
        for c in &mut pixel.0[..3] {
            *c = ((u32::from(*c) * alpha + white + 127) / 255) as u8;
        }
        pixel[3] = 255;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_delays_play_as_browsers_play_them() {
        assert_eq!(delay_ms(0.0), 100.0);
        assert_eq!(delay_ms(10.0), 100.0, "a GIF's 1 cs");
        assert_eq!(delay_ms(20.0), 20.0, "a GIF's 2 cs is kept");
        assert_eq!(delay_ms(1000.0 / 60.0), 1000.0 / 60.0);
    }

    #[test]
    fn transparency_becomes_white() {
        let mut image =
            RgbaImage::from_raw(3, 1, vec![0, 0, 0, 0, 255, 0, 0, 255, 0, 0, 0, 128]).unwrap();
        flatten_onto_white(&mut image);
        assert_eq!(image.get_pixel(0, 0).0, [255, 255, 255, 255]);
        assert_eq!(image.get_pixel(1, 0).0, [255, 0, 0, 255]);
        assert_eq!(image.get_pixel(2, 0).0, [127, 127, 127, 255]);
    }
}
