//! HEIC/HEIF and AVIF stills (iPhone and Android camera photos) through libheif.
//!
//! Debian 12 ships libheif 1.15.1; `libheif-rs` 0.20.0 over `libheif-sys` 1.14.4 is the newest
//! pair whose build asks for no more than that (libheif-sys 1.16 wants ≥ 1.16, 2.x ≥ 1.17), so
//! both are pinned exactly in `Cargo.toml`. libheif does the container work: grid images are
//! assembled, `irot`/`imir` (and `clap`) are applied while decoding, depth, alpha-less auxiliary
//! images and thumbnails are separate items that are never decoded. 10-bit (and other HDR
//! depths) come out as 8-bit RGB: libheif's colour conversion to interleaved RGB reduces the bit
//! depth. Like JPEG and PNG here, colour profiles are not converted.
//!
//! Limits: the primary image's size (after its transformations, and the coded `ispe` size) is
//! checked against the preset before anything is decoded, so a file that declares a pixel flood
//! costs nothing but parsing its boxes. The EXIF block, whose size the file declares, is read
//! only when small.
//!
//! EXIF orientation: HEIF (MIAF) says the transformative properties decide how an image is
//! shown, and cameras that write `irot` also leave the same turn in EXIF (iPhones do); applying
//! both would turn the picture twice. So EXIF orientation is applied only when the primary item
//! has neither `irot` nor `imir`, as in files from encoders that copy EXIF and write no
//! transformation (Debian 12's `heif-enc` does exactly that with a rotated JPEG).

use super::decode::{check_size, Decoded};
use super::orient;
use crate::{preset::ImagePreset, WorkerError};
use image::metadata::Orientation;
use image::DynamicImage;
use libheif_rs::{
    ColorSpace, HeifContext, HeifError, HeifErrorCode, HeifErrorSubCode, ImageHandle, ItemId,
    LibHeif, RgbChroma,
};
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Brands whose files libheif decodes: HEVC stills (`heic`, `heix`, and the generic `mif1`
/// / `msf1` that iPhone and Samsung files carry), and AV1 stills (`avif`, `avis`).
const BRANDS: [&[u8; 4]; 6] = [b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"];

/// Largest EXIF block read for its orientation; real ones are a few KiB.
const MAX_EXIF_BYTES: usize = 1 << 20;

/// How much of the file is read to find the primary item's transformations: the `meta` box
/// comes first in camera files and is a few KiB. Past this the file is taken as transformed
/// (EXIF ignored), which at worst leaves a rare file unrotated.
const MAX_META_SCAN: u64 = 4 << 20;

/// Does the file start with an `ftyp` box naming a HEIF or AVIF brand (major or compatible)?
pub fn is_heif(head: &[u8]) -> bool {
    let Some(ftyp) = head.get(..head.len().min(256)) else {
        return false;
    };
    if ftyp.len() < 16 || &ftyp[4..8] != b"ftyp" {
        return false;
    }
    let size = u32::from_be_bytes([ftyp[0], ftyp[1], ftyp[2], ftyp[3]]) as usize;
    let end = size.min(ftyp.len());
    if end < 16 {
        return false;
    }
    // Major brand at 8..12, minor version at 12..16, compatible brands after.
    std::iter::once(&ftyp[8..12])
        .chain(ftyp[16..end].chunks_exact(4))
        .any(|brand| BRANDS.iter().any(|b| &b[..] == brand))
}

/// Decodes the primary image, displayed as its properties (or, lacking them, its EXIF) say.
pub fn decode(input: &Path, preset: &ImagePreset) -> Result<Decoded, WorkerError> {
    let transformed = primary_is_transformed(input)?;
    let _lib = LibHeif::new();
    let context = match input.to_str() {
        Some(path) => HeifContext::read_from_file(path).map_err(heif_error)?,
        None => {
            return Err(WorkerError::Io(std::io::Error::other(
                "the input path is not UTF-8",
            )))
        }
    };
    let handle = context.primary_image_handle().map_err(heif_error)?;

    // Both sizes, before a pixel exists: `width`/`height` are the image as displayed (after
    // `irot`, `clap`), `ispe` is what the decoder has to produce first.
    let (width, height) = (handle.width(), handle.height());
    check_size(width, height, preset)?;
    let (coded_w, coded_h) = (handle.ispe_width(), handle.ispe_height());
    if coded_w > 0 && coded_h > 0 {
        check_size(coded_w as u32, coded_h as u32, preset)?;
    }
    let alpha = handle.has_alpha_channel();
    let channels: u64 = if alpha { 4 } else { 3 };
    // The decoder's YCbCr planes (up to 16 bits a sample) plus the interleaved RGB result.
    let needed = u64::from(width) * u64::from(height) * (6 + channels);
    if needed > preset.max_alloc_bytes {
        return Err(WorkerError::TooManyPixels(format!(
            "{width}x{height} needs about {needed} bytes to decode, over {}",
            preset.max_alloc_bytes
        )));
    }

    let orientation = if transformed {
        Orientation::NoTransforms
    } else {
        exif_orientation(&handle).unwrap_or(Orientation::NoTransforms)
    };

    // No `DecodingOptions`: libheif-rs 0.20's `decode` frees them before libheif reads them
    // (`options.map(|o| o.inner)` drops `o`), so libheif would read freed memory, which here
    // came back as "ignore transformations". libheif's defaults are what is wanted anyway:
    // transformations applied, and interleaved 8-bit RGB(A) asked for, which is what a 10-bit
    // image is converted to.
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    let decoded = _lib
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(heif_error)?;
    let planes = decoded.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| WorkerError::DecodeFailed("libheif returned no RGB plane".into()))?;
    if plane.storage_bits_per_pixel != 8 * channels as u8 {
        return Err(WorkerError::DecodeFailed(format!(
            "libheif returned {} bits a pixel, not {}",
            plane.storage_bits_per_pixel,
            8 * channels
        )));
    }
    let (w, h) = (plane.width, plane.height);
    let row = w as usize * channels as usize;
    let mut pixels = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        let start = y * plane.stride;
        let line = plane
            .data
            .get(start..start + row)
            .ok_or_else(|| WorkerError::DecodeFailed("libheif returned a short plane".into()))?;
        pixels.extend_from_slice(line);
    }
    drop(decoded);
    let short = || WorkerError::DecodeFailed("libheif returned too few pixels".into());
    let mut image = if alpha {
        image::RgbaImage::from_raw(w, h, pixels)
            .map(DynamicImage::ImageRgba8)
            .ok_or_else(short)?
    } else {
        image::RgbImage::from_raw(w, h, pixels)
            .map(DynamicImage::ImageRgb8)
            .ok_or_else(short)?
    };
    image.apply_orientation(orientation);
    let (width, height) = orient::displayed_size(w, h, orientation);
    Ok(Decoded {
        image,
        width,
        height,
    })
}

/// The orientation in the primary image's EXIF block, if it has a small one that parses.
fn exif_orientation(handle: &ImageHandle) -> Option<Orientation> {
    let mut ids: [ItemId; 4] = [0; 4];
    let count = handle.metadata_block_ids(&mut ids, b"Exif");
    let id = *ids.get(..count)?.first()?;
    let size = handle.metadata_size(id);
    if size < 4 || size > MAX_EXIF_BYTES {
        return None;
    }
    let block = handle.metadata(id).ok()?;
    // A HEIF EXIF item starts with the offset of the TIFF header from the end of that field.
    let offset = u32::from_be_bytes(block.get(..4)?.try_into().ok()?) as usize;
    let tiff = block.get(4usize.checked_add(offset)?..)?;
    Orientation::from_exif_chunk(tiff)
}

/// Whether the primary item has an `irot` or `imir` property, from the `meta` box itself
/// (libheif 1.15 has no call that says so). Anything it cannot follow counts as transformed.
fn primary_is_transformed(input: &Path) -> Result<bool, WorkerError> {
    let mut head = Vec::new();
    File::open(input)?
        .take(MAX_META_SCAN)
        .read_to_end(&mut head)?;
    Ok(boxes::primary_transformed(&head).unwrap_or(true))
}

fn heif_error(e: HeifError) -> WorkerError {
    let text = format!("libheif: {:?}/{:?}: {}", e.code, e.sub_code, e.message);
    match (e.code, e.sub_code) {
        (_, HeifErrorSubCode::SecurityLimitExceeded) => WorkerError::TooManyPixels(text),
        (HeifErrorCode::UnsupportedFeature | HeifErrorCode::UnsupportedFileType, _)
        | (_, HeifErrorSubCode::UnsupportedCodec | HeifErrorSubCode::UnsupportedImageType) => {
            WorkerError::UnsupportedCodec(text)
        }
        _ => WorkerError::DecodeFailed(text),
    }
}

/// Just enough ISO BMFF to find the primary item's properties.
mod boxes {
    /// `(type, body)` of each box in `data`; `None` on a box that runs past the end.
    fn children(data: &[u8]) -> Option<Vec<([u8; 4], &[u8])>> {
        let mut out = Vec::new();
        let mut at = 0usize;
        while at < data.len() {
            let head = data.get(at..at + 8)?;
            let size32 = u32::from_be_bytes(head[..4].try_into().ok()?) as u64;
            let kind: [u8; 4] = head[4..8].try_into().ok()?;
            let (header, size) = match size32 {
                0 => (8u64, (data.len() - at) as u64),
                1 => {
                    let large = data.get(at + 8..at + 16)?;
                    (16, u64::from_be_bytes(large.try_into().ok()?))
                }
                n => (8, n),
            };
            if size < header {
                return None;
            }
            let end = at.checked_add(usize::try_from(size).ok()?)?;
            out.push((kind, data.get(at + header as usize..end)?));
            at = end;
        }
        Some(out)
    }

    fn find<'a>(list: &[([u8; 4], &'a [u8])], kind: &[u8; 4]) -> Option<&'a [u8]> {
        list.iter().find(|(k, _)| k == kind).map(|(_, b)| *b)
    }

    fn be(bytes: &[u8], at: usize, len: usize) -> Option<u32> {
        let b = bytes.get(at..at.checked_add(len)?)?;
        Some(b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)))
    }

    /// Top-level boxes are walked until `meta`; a file cut before its end (or a `meta` cut by
    /// the scan limit) gives `None`.
    pub(super) fn primary_transformed(file: &[u8]) -> Option<bool> {
        let mut at = 0usize;
        let meta = loop {
            let size32 = be(file, at, 4)? as usize;
            let kind = file.get(at + 4..at + 8)?;
            let (header, size) = match size32 {
                0 => (8, file.len() - at),
                1 => {
                    let large =
                        u64::from(be(file, at + 8, 4)?) << 32 | u64::from(be(file, at + 12, 4)?);
                    (16, usize::try_from(large).ok()?)
                }
                n => (8, n),
            };
            if size < header {
                return None;
            }
            if kind == b"meta" {
                break file.get(at + header..at.checked_add(size)?)?;
            }
            at = at.checked_add(size)?;
        };
        // `meta` is a FullBox: version and flags first.
        let meta = children(meta.get(4..)?)?;
        let pitm = find(&meta, b"pitm")?;
        let primary = if *pitm.first()? == 0 {
            be(pitm, 4, 2)?
        } else {
            be(pitm, 4, 4)?
        };
        let iprp = children(find(&meta, b"iprp")?)?;
        let ipco = children(find(&iprp, b"ipco")?)?;
        let kinds: Vec<[u8; 4]> = ipco.iter().map(|(k, _)| *k).collect();
        let mut transformed = false;
        for ipma in iprp.iter().filter(|(k, _)| k == b"ipma").map(|(_, b)| *b) {
            let version = *ipma.first()?;
            let flags = be(ipma, 1, 3)?;
            let entries = be(ipma, 4, 4)?;
            let mut at = 8usize;
            for _ in 0..entries {
                let (item, id_len) = if version < 1 {
                    (be(ipma, at, 2)?, 2)
                } else {
                    (be(ipma, at, 4)?, 4)
                };
                at += id_len;
                let count = be(ipma, at, 1)?;
                at += 1;
                let wide = flags & 1 == 1;
                for _ in 0..count {
                    let index = if wide {
                        be(ipma, at, 2)? & 0x7fff
                    } else {
                        be(ipma, at, 1)? & 0x7f
                    };
                    at += if wide { 2 } else { 1 };
                    if item == primary && index > 0 {
                        let kind = kinds.get(index as usize - 1)?;
                        transformed |= kind == b"irot" || kind == b"imir";
                    }
                }
            }
        }
        Some(transformed)
    }
}
