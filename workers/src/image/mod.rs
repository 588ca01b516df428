//! The image pipeline: an untrusted still or animated picture in; `thumbnail`, `preview` and
//! `blurred` files (from the first frame), the displayed size and two placeholder strings out;
//! for an animated GIF, WebP or APNG also `animation`, an H.264 MP4 ([`animation`]), and its
//! duration.
//!
//! The order of work is chosen for speed on big phone photos: decode only as many pixels as the
//! largest output needs (JPEG shrinks in the DCT domain), make each smaller output from the
//! previous one rather than from the original, and encode each output on its own thread as soon as
//! its pixels exist.

pub mod animation;
pub mod blur;
pub mod decode;
pub mod encode;
mod heif;
mod orient;
pub mod placeholder;
pub mod resize;
pub mod turbo;

use crate::av::Av;
use crate::preset::{ImageOutputPreset, ImagePreset};
use crate::Deadline;
use crate::{Metadata, Placeholder, Processed, Step, Variant, WorkerError};
use image::DynamicImage;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The still variant names an image job produces, in the order they are reported; an
/// animation adds [`animation::NAME`] after them.
pub const VARIANT_NAMES: [&str; 3] = ["thumbnail", "preview", "blurred"];

/// Runs the whole image job on `input`, writing `<variant>.<ext>` files into `out_dir`.
/// `av` encodes the animation of an animated picture, which without it fails before any pixel
/// is decoded.
pub fn process(
    input: &Path,
    preset: &ImagePreset,
    out_dir: &Path,
    av: Option<&dyn Av>,
) -> Result<Processed, WorkerError> {
    let mut steps = Vec::new();
    let deadline = Deadline::after_seconds(preset.animation.max_job_seconds);
    let started = Instant::now();
    // First, so that an animation over its limits is refused before any pixel is decoded.
    let animated = match (animation::scan(input, preset)?, av) {
        (Some(scan), Some(av)) => Some((scan, av)),
        (Some(_), None) => return Err(crate::av::missing("an animation")),
        (None, _) => None,
    };
    if animated.is_some() {
        steps.push(Step {
            name: "scan",
            took: started.elapsed(),
        });
    }
    let started = Instant::now();
    let decoded = decode::decode(input, preset, largest_edge(preset, &VARIANT_NAMES))?;
    let image = resize::normalize(decoded.image);
    steps.push(Step {
        name: "decode",
        took: started.elapsed(),
    });

    let original = (decoded.width, decoded.height);
    let (mut variants, placeholder) =
        render(image, original, preset, out_dir, &VARIANT_NAMES, &mut steps)?;
    let mut duration_ms = None;
    if let Some((scan, av)) = animated {
        let started = Instant::now();
        if let Some(video) = animation::write(input, &scan, preset, out_dir, deadline, av)? {
            duration_ms = video.duration_ms;
            variants.push(video);
        }
        steps.push(Step {
            name: "animation",
            took: started.elapsed(),
        });
    }
    Ok(Processed {
        metadata: Metadata {
            width: Some(decoded.width),
            height: Some(decoded.height),
            duration_ms,
            ..Metadata::default()
        },
        placeholder: Some(placeholder),
        variants,
        steps,
    })
}

/// Makes the named variants (a subset of [`VARIANT_NAMES`]) and the placeholders from pixels
/// already decoded elsewhere, such as a video's poster frame. `img` is taken as displayed.
pub fn still_variants(
    img: DynamicImage,
    preset: &ImagePreset,
    out_dir: &Path,
    names: &[&str],
) -> Result<(Vec<Variant>, Placeholder), WorkerError> {
    if let Some(unknown) = names.iter().find(|n| !VARIANT_NAMES.contains(n)) {
        return Err(WorkerError::EncodeFailed(format!(
            "no image variant named {unknown:?}"
        )));
    }
    decode::check_size(img.width(), img.height(), preset)?;
    let original = (img.width(), img.height());
    render(
        resize::normalize(img),
        original,
        preset,
        out_dir,
        names,
        &mut Vec::new(),
    )
}

fn output_preset<'p>(preset: &'p ImagePreset, name: &str) -> &'p ImageOutputPreset {
    match name {
        "thumbnail" => &preset.thumbnail,
        "preview" => &preset.preview,
        _ => &preset.blurred,
    }
}

/// The longest edge any requested output (or the placeholder input) needs from the decoder.
fn largest_edge(preset: &ImagePreset, names: &[&str]) -> u32 {
    names
        .iter()
        .map(|n| output_preset(preset, n).max_edge)
        .fold(placeholder::TINY_EDGE, u32::max)
}

/// A picture on the way to the encoders; shared with the resize ladder while a smaller output
/// may still start from it.
struct Pending<'p> {
    name: &'static str,
    output: &'p ImageOutputPreset,
    pixels: Arc<DynamicImage>,
}

/// Resizes, blurs, encodes and writes; `image` may be smaller than `original` (decoded at a
/// reduced scale) but never smaller than any output it must produce.
fn render(
    image: DynamicImage,
    original: (u32, u32),
    preset: &ImagePreset,
    out_dir: &Path,
    names: &[&str],
    steps: &mut Vec<Step>,
) -> Result<(Vec<Variant>, Placeholder), WorkerError> {
    let started = Instant::now();
    let mut wanted: Vec<(&'static str, &ImageOutputPreset)> = VARIANT_NAMES
        .into_iter()
        .filter(|n| names.contains(n))
        .map(|n| (n, output_preset(preset, n)))
        .collect();
    // Largest first, so each output can be made from the one before it, and the largest
    // encode, which dominates the job, starts first.
    wanted.sort_by_key(|(_, out)| std::cmp::Reverse(out.max_edge));

    // Each variant is encoded on its own thread as soon as its pixels exist, so the preview
    // encode runs while the smaller outputs are resized and the placeholders computed on this
    // thread: on two cores the job takes about as long as the preview's resize and encode.
    let result = std::thread::scope(|scope| {
        let mut handles = Vec::with_capacity(wanted.len());
        // `ladder` holds unblurred pictures, each smaller than the one before; every resize
        // starts from the smallest rung that is still at least as big as the target.
        let mut ladder: Vec<Arc<DynamicImage>> = vec![Arc::new(image)];
        let mut encode_started = None;
        for (name, output) in wanted {
            let target = target_size(original, output.max_edge, &ladder[0]);
            let pixels = Arc::new(resize::resize(
                rung_for(&ladder, target),
                target.0,
                target.1,
            )?);
            let pending = Pending {
                name,
                output,
                pixels: if output.blur_sigma > 0.0 {
                    Arc::new(blur::blur(&pixels, output.blur_sigma))
                } else {
                    Arc::clone(&pixels)
                },
            };
            encode_started.get_or_insert_with(Instant::now);
            handles.push(scope.spawn(move || write_variant(&pending, out_dir)));
            ladder.push(pixels);
        }
        let tiny_size = target_size(original, placeholder::TINY_EDGE, &ladder[0]);
        let tiny = resize::resize(rung_for(&ladder, tiny_size), tiny_size.0, tiny_size.1)?;
        drop(ladder);
        steps.push(Step {
            name: "resize",
            took: started.elapsed(),
        });
        let placeholder_started = Instant::now();
        let placeholder = placeholder::placeholders(&tiny, preset.blurhash_components);
        let placeholder_took = placeholder_started.elapsed();
        let written: Vec<Result<Variant, WorkerError>> = handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(WorkerError::EncodeFailed("an encoder panicked".into()))
                })
            })
            .collect();
        // From the first encode's start to the last one's end: it overlaps "resize".
        steps.push(Step {
            name: "encode",
            took: encode_started.map_or_else(Default::default, |at| at.elapsed()),
        });
        Ok::<_, WorkerError>((written, placeholder, placeholder_took))
    });
    let (written, placeholder, placeholder_took) = result?;
    let placeholder = placeholder?;
    steps.push(Step {
        name: "placeholder",
        took: placeholder_took,
    });

    let mut variants = written.into_iter().collect::<Result<Vec<_>, _>>()?;
    variants.sort_by_key(|v| VARIANT_NAMES.iter().position(|n| *n == v.name));
    Ok((variants, placeholder))
}

/// The size of an output bounded by `max_edge`, from the original's proportions; clamped to the
/// pixels at hand so that a rounding difference can never turn into an upscale.
fn target_size(original: (u32, u32), max_edge: u32, decoded: &DynamicImage) -> (u32, u32) {
    let (w, h) = resize::fit(original.0, original.1, max_edge);
    (w.min(decoded.width()), h.min(decoded.height()))
}

fn rung_for(ladder: &[Arc<DynamicImage>], target: (u32, u32)) -> &DynamicImage {
    ladder
        .iter()
        .rev()
        .find(|img| img.width() >= target.0 && img.height() >= target.1)
        .unwrap_or(&ladder[0])
}

fn write_variant(pending: &Pending<'_>, out_dir: &Path) -> Result<Variant, WorkerError> {
    let output = pending.output;
    let format = output.format;
    let webp = encode::WebpTuning::of(output.webp_method, output.webp_sns);
    let bytes = encode::encode(&pending.pixels, format, output.quality, webp)?;
    let ext = match format {
        crate::preset::ImageFormat::Webp => "webp",
        crate::preset::ImageFormat::Jpeg => "jpg",
    };
    let path = out_dir.join(format!("{}.{ext}", pending.name));
    std::fs::write(&path, &bytes)?;
    Ok(Variant {
        name: pending.name.to_string(),
        path,
        mime: format.mime().to_string(),
        size: bytes.len() as u64,
        width: Some(pending.pixels.width()),
        height: Some(pending.pixels.height()),
        duration_ms: None,
    })
}
