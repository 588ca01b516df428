//! Turning untrusted bytes into pixels without letting them choose how much memory or time we
//! spend: sniff the format, read the header, refuse floods, and only then decode.
//!
//! JPEGs go through `jpeg-decoder`, which can decode straight to 1/2, 1/4 or 1/8 scale in the DCT
//! domain: a 24 MP photo becomes 1500x1000 pixels without the full frame ever existing. Other
//! formats go through `image` with its `Limits` set from the preset, except HEIC/HEIF and AVIF,
//! which `heif.rs` hands to libheif.

use super::orient;
use crate::{preset::ImagePreset, WorkerError};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// Pixels ready for resizing, plus the facts about the original that the caller records.
pub struct Decoded {
    /// As displayed (orientation applied). For JPEG possibly already shrunk, but never below the
    /// `min_edge` asked for (unless the original is smaller).
    pub image: DynamicImage,
    /// The original's size as displayed, which is what `metadata` reports.
    pub width: u32,
    pub height: u32,
}

/// Decodes `input`, shrinking in the decoder when that is free, as long as the longest edge of
/// the result stays at least `min_edge` (or the original's, if that is smaller).
pub fn decode(input: &Path, preset: &ImagePreset, min_edge: u32) -> Result<Decoded, WorkerError> {
    let mut reader = BufReader::new(File::open(input)?);
    if super::heif::is_heif(reader.fill_buf()?) {
        drop(reader);
        return catch_unwind(AssertUnwindSafe(|| super::heif::decode(input, preset)))
            .unwrap_or_else(|_| {
                Err(WorkerError::DecodeFailed(
                    "the decoder gave up (panic)".into(),
                ))
            });
    }
    let format = sniff(&mut reader)?;
    // Decoders are fuzzed, but a panic on hostile bytes must still fail the job rather than
    // the worker thread; the caller gets an ordinary `decode_failed`.
    catch_unwind(AssertUnwindSafe(|| match format {
        ImageFormat::Jpeg => decode_jpeg(reader, preset, min_edge),
        other => decode_generic(reader, other, preset),
    }))
    .unwrap_or_else(|_| {
        Err(WorkerError::DecodeFailed(
            "the decoder gave up (panic)".into(),
        ))
    })
}

/// Reads the format from the first bytes; the file name and any declared type are ignored.
pub(crate) fn sniff<R: BufRead + Seek>(reader: &mut R) -> Result<ImageFormat, WorkerError> {
    let mut head = [0u8; 32];
    let mut len = 0;
    while len < head.len() {
        match reader.read(&mut head[len..])? {
            0 => break,
            n => len += n,
        }
    }
    reader.seek(SeekFrom::Start(0))?;
    let format = image::guess_format(&head[..len])
        .map_err(|_| WorkerError::DecodeFailed("not a recognised image format".into()))?;
    match format {
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP => Ok(format),
        other => Err(WorkerError::UnsupportedCodec(format!(
            "{} images are not processed",
            other.extensions_str().first().unwrap_or(&"this kind of")
        ))),
    }
}

/// Refuses a pixel flood from the header's numbers alone.
pub(crate) fn check_size(width: u32, height: u32, preset: &ImagePreset) -> Result<(), WorkerError> {
    if width == 0 || height == 0 {
        return Err(WorkerError::DecodeFailed("the image has no pixels".into()));
    }
    if width > preset.max_dimension || height > preset.max_dimension {
        return Err(WorkerError::TooManyPixels(format!(
            "{width}x{height} has a side over {}",
            preset.max_dimension
        )));
    }
    if u64::from(width) * u64::from(height) > preset.max_pixels {
        return Err(WorkerError::TooManyPixels(format!(
            "{width}x{height} is over {} pixels",
            preset.max_pixels
        )));
    }
    Ok(())
}

fn decode_jpeg<R: Read>(
    reader: R,
    preset: &ImagePreset,
    min_edge: u32,
) -> Result<Decoded, WorkerError> {
    let mut decoder = jpeg_decoder::Decoder::new(reader);
    decoder.set_max_decoding_buffer_size(
        usize::try_from(preset.max_alloc_bytes).unwrap_or(usize::MAX),
    );
    decoder.read_info().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| WorkerError::DecodeFailed("no JPEG frame header".into()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    check_size(width, height, preset)?;

    // APP1 comes before the frame header, so `read_info` has already seen it.
    let orientation = decoder
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);

    let (w, h) = jpeg_scaled_size(width, height, min_edge);
    // Asking for exactly the size one DCT scale gives makes the decoder pick that scale, since it
    // takes the smallest factor reaching the request.
    let (w, h) = decoder
        .scale(w as u16, h as u16)
        .map_err(jpeg_error)
        .map(|(w, h)| (u32::from(w), u32::from(h)))?;
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| WorkerError::DecodeFailed("no JPEG frame header".into()))?;

    let mut image = jpeg_pixels_to_image(pixels, w, h, info.pixel_format)?;
    image.apply_orientation(orientation);
    let (width, height) = orient::displayed_size(width, height, orientation);
    Ok(Decoded {
        image,
        width,
        height,
    })
}

/// The smallest of the sizes a DCT-domain decode offers (1/8, 1/4, 1/2, 1) whose longest edge is
/// still at least `min_edge`, so nothing downstream has to upscale.
pub(crate) fn jpeg_scaled_size(width: u32, height: u32, min_edge: u32) -> (u32, u32) {
    let longest = width.max(height);
    for eighths in [1u32, 2, 4] {
        let scaled = |len: u32| len.saturating_mul(eighths).div_ceil(8);
        if scaled(longest) >= min_edge {
            return (scaled(width), scaled(height));
        }
    }
    (width, height)
}

fn jpeg_pixels_to_image(
    pixels: Vec<u8>,
    width: u32,
    height: u32,
    format: jpeg_decoder::PixelFormat,
) -> Result<DynamicImage, WorkerError> {
    use jpeg_decoder::PixelFormat;
    let short = || WorkerError::DecodeFailed("the JPEG decoder returned too few pixels".into());
    let image = match format {
        PixelFormat::RGB24 => image::RgbImage::from_raw(width, height, pixels)
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(short)?,
        // Grey stays one channel until it reaches the encoder: a quarter of the bytes to resize.
        PixelFormat::L8 => image::GrayImage::from_raw(width, height, pixels)
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(short)?,
        // Only lossless JPEGs have more than 8 bits; big-endian samples, keep the high byte.
        PixelFormat::L16 => {
            let high: Vec<u8> = pixels.chunks_exact(2).map(|s| s[0]).collect();
            image::GrayImage::from_raw(width, height, high)
                .map(DynamicImage::ImageLuma8)
                .ok_or_else(short)?
        }
        // jpeg-decoder has already undone Adobe's inversion, so these are plain CMYK inks.
        PixelFormat::CMYK32 => {
            let rgb: Vec<u8> = pixels
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = 255 - u32::from(p[3]);
                    [p[0], p[1], p[2]].map(|c| ((255 - u32::from(c)) * k / 255) as u8)
                })
                .collect();
            image::RgbImage::from_raw(width, height, rgb)
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(short)?
        }
    };
    Ok(image)
}

fn jpeg_error(e: jpeg_decoder::Error) -> WorkerError {
    match e {
        jpeg_decoder::Error::Unsupported(what) => {
            WorkerError::UnsupportedCodec(format!("JPEG feature not supported: {what:?}"))
        }
        // An I/O error while decoding is a truncated file, not trouble with the disk: the bytes
        // were readable, there just were not enough of them.
        other => WorkerError::DecodeFailed(format!("JPEG: {other}")),
    }
}

/// PNG, GIF and WebP through `image`. Animations give their first frame only: `read_image` on
/// GIF and WebP decoders stops after it, so later frames cost nothing but file size.
fn decode_generic(
    reader: BufReader<File>,
    format: ImageFormat,
    preset: &ImagePreset,
) -> Result<Decoded, WorkerError> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(preset.max_dimension);
    limits.max_image_height = Some(preset.max_dimension);
    limits.max_alloc = Some(preset.max_alloc_bytes);

    let mut reader = ImageReader::with_format(reader, format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, preset)?;
    if decoder.total_bytes() > preset.max_alloc_bytes {
        return Err(WorkerError::TooManyPixels(format!(
            "{width}x{height} needs {} bytes to decode, over {}",
            decoder.total_bytes(),
            preset.max_alloc_bytes
        )));
    }
    // Metadata that cannot be parsed is not worth failing the job over: show it unrotated.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    image.apply_orientation(orientation);
    let (width, height) = orient::displayed_size(width, height, orientation);
    Ok(Decoded {
        image,
        width,
        height,
    })
}

pub(crate) fn image_error(e: image::ImageError) -> WorkerError {
    match e {
        image::ImageError::Limits(l) => WorkerError::TooManyPixels(l.to_string()),
        image::ImageError::Unsupported(u) => WorkerError::UnsupportedCodec(u.to_string()),
        image::ImageError::IoError(io) => WorkerError::DecodeFailed(format!("truncated: {io}")),
        other => WorkerError::DecodeFailed(other.to_string()),
    }
}
