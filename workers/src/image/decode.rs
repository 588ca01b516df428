//! Turning untrusted bytes into pixels without letting them choose how much memory or time we
//! spend: sniff the format, read the header, refuse floods, and only then decode.
//!
//! JPEGs go through libjpeg-turbo (`turbo.rs`), which decodes straight to a k/8 scale in the
//! DCT domain: a 24 MP photo becomes 1500x1000 pixels without the full frame ever existing, a
//! 12 MP one 1512x1134 (3/8) rather than 2016x1512. Other formats go through `image` with its
//! `Limits` set from the preset, except HEIC/HEIF and AVIF, which `heif.rs` hands to libheif.

use super::{orient, turbo};
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

/// Progressive scans allowed. Encoders write about ten (jpegtran's and mozjpeg's most thorough
/// scripts about twenty); each scan is another pass over every coefficient of the image, so a
/// file of thousands of tiny scans costs minutes to decode ("two issues with the JPEG
/// standard", libjpeg-turbo).
const MAX_SCANS: u32 = 100;

fn decode_jpeg(
    mut reader: BufReader<File>,
    preset: &ImagePreset,
    min_edge: u32,
) -> Result<Decoded, WorkerError> {
    // TurboJPEG decodes from memory: the file is read whole, and counts against the limit.
    let len = reader.get_ref().metadata()?.len();
    if len > preset.max_alloc_bytes {
        return Err(WorkerError::TooManyPixels(format!(
            "a {len}-byte JPEG is over {} bytes",
            preset.max_alloc_bytes
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    reader.read_to_end(&mut bytes)?;

    let mut decoder = turbo::Decompressor::new(&turbo::Limits {
        max_pixels: preset.max_pixels,
        max_memory_bytes: preset.max_alloc_bytes,
        max_scans: MAX_SCANS,
    })
    .map_err(turbo_error)?;
    let (header, warning) = decoder.read_header(&bytes).map_err(turbo_error)?;
    judge(warning)?;
    let (width, height) = (header.width, header.height);
    check_size(width, height, preset)?;

    // Metadata that cannot be parsed is not worth failing the job over: show it unrotated.
    let orientation = exif_chunk(&bytes)
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);

    // libjpeg-turbo cannot scale a lossless JPEG.
    let eighths = match header.lossless {
        true => 8,
        false => jpeg_scale_eighths(width, height, min_edge),
    };
    let format = match header.colorspace {
        // Grey stays one channel until it reaches the encoder: a third of the bytes to resize.
        turbo::Colorspace::Gray => turbo::Format::Gray,
        // libjpeg-turbo turns YCCK into CMYK itself; neither converts to RGB.
        turbo::Colorspace::Cmyk | turbo::Colorspace::Ycck => turbo::Format::Cmyk,
        turbo::Colorspace::Rgb | turbo::Colorspace::YCbCr => turbo::Format::Rgb,
    };
    let output = turbo::Decompressor::output_bytes(&header, eighths, format);
    let room = preset.max_alloc_bytes.saturating_sub(len);
    if output > room {
        return Err(WorkerError::TooManyPixels(format!(
            "{width}x{height} at {eighths}/8 needs {output} bytes of pixels, over {room}"
        )));
    }
    // What the file and the output take is not libjpeg-turbo's to spend on its own buffers.
    decoder.set_max_memory(room - output).map_err(turbo_error)?;
    let (pixels, warning) = decoder
        .decode(&bytes, &header, eighths, format)
        .map_err(turbo_error)?;
    judge(warning)?;
    drop(bytes);

    let mut image = jpeg_pixels_to_image(pixels)?;
    image.apply_orientation(orientation);
    let (width, height) = orient::displayed_size(width, height, orientation);
    Ok(Decoded {
        image,
        width,
        height,
    })
}

/// The scales worth asking libjpeg-turbo for, in eighths. It offers every k/8, but only 1/8,
/// 1/4, 1/2 and 8/8 have SIMD inverse DCTs: measured on the seeded photos
/// (examples/measure_jpeg.rs), 7/8 of a 1600x1200 costs 40% more CPU than all of it, while 3/8
/// of a 4032x3024 costs no more than 1/2 and leaves 44% fewer pixels to resize. So 3/8 is
/// used, 5/8 to 7/8 are not.
const JPEG_SCALES: [u32; 5] = [1, 2, 3, 4, 8];

/// The smallest of [`JPEG_SCALES`] at which the longest edge is still at least `min_edge`, so
/// nothing downstream has to upscale.
pub(crate) fn jpeg_scale_eighths(width: u32, height: u32, min_edge: u32) -> u32 {
    let longest = width.max(height);
    JPEG_SCALES
        .into_iter()
        .find(|&k| turbo::scaled(longest, k) >= min_edge)
        .unwrap_or(8)
}

/// The Exif payload (from its TIFF header on) of the first APP1 "Exif" segment before the
/// first scan, if any. A walk over the segments' lengths; stops quietly at anything odd.
fn exif_chunk(jpeg: &[u8]) -> Option<&[u8]> {
    if !jpeg.starts_with(&[0xff, 0xd8]) {
        return None;
    }
    let mut at = 2;
    loop {
        // Fill bytes (0xff) may precede a marker; anything else here is not a segment.
        while *jpeg.get(at)? == 0xff && *jpeg.get(at + 1)? == 0xff {
            at += 1;
        }
        if jpeg[at] != 0xff {
            return None;
        }
        let marker = *jpeg.get(at + 1)?;
        match marker {
            // Start of scan or end of image: the headers are over.
            0xda | 0xd9 => return None,
            // Markers without a length.
            0x01 | 0xd0..=0xd8 => {
                at += 2;
                continue;
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*jpeg.get(at + 2)?, *jpeg.get(at + 3)?]));
        let body = jpeg.get(at + 4..at + 2 + len.max(2))?;
        if marker == 0xe1 {
            if let Some(tiff) = body.strip_prefix(b"Exif\0\0") {
                return Some(tiff);
            }
        }
        at += 2 + len;
    }
}

fn jpeg_pixels_to_image(pixels: turbo::Pixels) -> Result<DynamicImage, WorkerError> {
    let turbo::Pixels {
        width,
        height,
        format,
        data,
    } = pixels;
    let short = || WorkerError::DecodeFailed("the JPEG decoder returned too few pixels".into());
    let image = match format {
        turbo::Format::Rgb => image::RgbImage::from_raw(width, height, data)
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(short)?,
        turbo::Format::Gray => image::GrayImage::from_raw(width, height, data)
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(short)?,
        // libjpeg-turbo gives the samples as stored, and Adobe (Photoshop, ImageMagick, nearly
        // every CMYK JPEG) stores them inverted: 255 is no ink. As jpeg-decoder did before,
        // every CMYK JPEG is taken to be Adobe's.
        turbo::Format::Cmyk => {
            let rgb: Vec<u8> = data
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = u32::from(p[3]);
                    [p[0], p[1], p[2]].map(|c| (u32::from(c) * k / 255) as u8)
                })
                .collect();
            image::RgbImage::from_raw(width, height, rgb)
                .map(DynamicImage::ImageRgb8)
                .ok_or_else(short)?
        }
    };
    Ok(image)
}

/// Bytes between segments where a marker should be (some cameras pad) leave the picture whole.
/// Any other warning is damage libjpeg-turbo papered over, such as a truncated file's missing
/// rows filled with grey: the job fails.
fn judge(warning: Option<turbo::Error>) -> Result<(), WorkerError> {
    match warning {
        Some(w) if !w.message.contains("extraneous bytes before marker") => Err(turbo_error(w)),
        _ => Ok(()),
    }
}

fn turbo_error(e: turbo::Error) -> WorkerError {
    let m = &e.message;
    // libjpeg's JERR_OUT_OF_MEMORY and JERR_NO_BACKING_STORE, libjpeg-turbo's own message for
    // its buffers over TJPARAM_MAXMEMORY, and TurboJPEG's pixel limit.
    if m.contains("Insufficient memory")
        || m.contains("Memory limit exceeded")
        || m.contains("Backing store not supported")
        || m.contains("Image is too large")
    {
        return WorkerError::TooManyPixels(format!("JPEG: {m}"));
    }
    // JERR_SOF_UNSUPPORTED (hierarchical JPEG), JERR_NOT_COMPILED, JERR_CONVERSION_NOTIMPL.
    if m.contains("Unsupported JPEG process")
        || m.contains("omitted at compile time")
        || m.contains("Unsupported color conversion")
        || m.contains("samples are not supported")
    {
        return WorkerError::UnsupportedCodec(format!("JPEG feature not supported: {m}"));
    }
    // A warning that failed the job is damaged data, most often a truncated file.
    WorkerError::DecodeFailed(format!("JPEG: {m}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_the_smallest_eighth_keeping_min_edge() {
        assert_eq!(jpeg_scale_eighths(6000, 4000, 1280), 2); // 1500
        assert_eq!(jpeg_scale_eighths(4000, 6000, 1280), 2);
        assert_eq!(jpeg_scale_eighths(4032, 3024, 1280), 3); // 1512, not 1/2's 2016
                                                             // 7/8 would give 1400, but costs more than the whole picture.
        assert_eq!(jpeg_scale_eighths(1600, 1200, 1280), 8);
        assert_eq!(jpeg_scale_eighths(2600, 1800, 1280), 4); // 1300
        assert_eq!(jpeg_scale_eighths(12_000, 9_000, 1280), 1); // 1500
        assert_eq!(jpeg_scale_eighths(640, 480, 1280), 8);
        assert_eq!(jpeg_scale_eighths(1280, 720, 1280), 8);
        assert_eq!(jpeg_scale_eighths(1, 1, 1280), 8);
    }

    #[test]
    fn the_scaled_longest_edge_never_drops_below_min_edge() {
        for min_edge in [64, 320, 1280] {
            for longest in (1..20_000).step_by(7) {
                let k = jpeg_scale_eighths(longest, longest / 2 + 1, min_edge);
                let got = turbo::scaled(longest, k);
                assert!(got >= min_edge.min(longest), "{longest} at {k}/8 is {got}");
                // And it is the smallest such: the next scale down would be too small.
                if let Some(&less) = JPEG_SCALES.iter().rev().find(|&&s| s < k) {
                    assert!(turbo::scaled(longest, less) < min_edge, "{longest} {k}");
                }
            }
        }
    }

    #[test]
    fn exif_is_found_among_the_segments_and_nothing_odd_panics() {
        let tiff = b"MM\0*\0\0\0\x08";
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0, 4, b'J', b'F'];
        jpeg.extend_from_slice(&[0xff, 0xff, 0xe1, 0, (2 + 6 + tiff.len()) as u8]);
        jpeg.extend_from_slice(b"Exif\0\0");
        jpeg.extend_from_slice(tiff);
        jpeg.extend_from_slice(&[0xff, 0xda, 0, 2]);
        assert_eq!(exif_chunk(&jpeg), Some(&tiff[..]));
        // After the first scan, or cut anywhere: none, and no panic.
        for cut in 0..jpeg.len() {
            let _ = exif_chunk(&jpeg[..cut]);
        }
        let mut late = vec![0xff, 0xd8, 0xff, 0xda, 0, 2];
        late.extend_from_slice(&jpeg[2..]);
        assert_eq!(exif_chunk(&late), None);
        // A length shorter than its own two bytes does not loop.
        assert_eq!(
            exif_chunk(&[0xff, 0xd8, 0xff, 0xe1, 0, 0, 0xff, 0xd9]),
            None
        );
    }
}
