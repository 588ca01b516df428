//! HEIC/HEIF and AVIF stills (iPhone and Android camera photos) through libheif.
//!
//! Debian 12 ships libheif 1.15.1; `libheif-rs` 0.20.0 over `libheif-sys` 1.14.4 is the newest
//! pair whose build asks for no more than that (libheif-sys 1.16 wants ≥ 1.16, 2.x ≥ 1.17), so
//! both are pinned exactly in `Cargo.toml`. libheif does the container work: grid images are
//! assembled, `irot`/`imir` (and `clap`) are applied while decoding; depth maps, other auxiliary
//! images (an alpha plane excepted) and thumbnails are items of their own, never decoded. 10-bit
//! (and other HDR depths) come out as 8-bit RGB: libheif's colour conversion to interleaved RGB
//! reduces the bit depth (PQ/HLG are not tone-mapped). Like JPEG and PNG here, colour profiles
//! are not converted.
//!
//! Limits: the primary image's size (after its transformations), its coded `ispe` size and, for
//! a grid or overlay, the canvas its descriptor declares are checked against the preset before
//! anything is decoded, so a file that declares a pixel flood costs nothing but parsing its
//! boxes. The EXIF block, whose size the file declares, is read only when small. What is not
//! checked beforehand is an HEVC/AV1 stream whose own header claims more than its `ispe`: that
//! decode is bounded by the transform child's memory ceiling and time budget instead, and its
//! result is refused (`too_many_pixels`) when over the preset.
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
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Brands whose files libheif decodes: HEVC stills (`heic`, `heix`, and the generic `mif1`
/// / `msf1` that iPhone and Samsung files carry), and AV1 stills (`avif`, `avis`).
const BRANDS: [&[u8; 4]; 6] = [b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis"];

/// Largest EXIF block read for its orientation; real ones are a few KiB.
const MAX_EXIF_BYTES: usize = 1 << 20;

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
    let primary = inspect(input)?;
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
    if let Some((w, h)) = primary.canvas {
        check_size(w, h, preset)?;
    }
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

    let orientation = if primary.transformed {
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
    // A coded stream bigger than its `ispe` decodes at its own size; refuse it before going on.
    check_size(w, h, preset)?;
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
    if !(4..=MAX_EXIF_BYTES).contains(&size) {
        return None;
    }
    let block = handle.metadata(id).ok()?;
    // A HEIF EXIF item starts with the offset of the TIFF header from the end of that field.
    let offset = u32::from_be_bytes(block.get(..4)?.try_into().ok()?) as usize;
    let tiff = block.get(4usize.checked_add(offset)?..)?;
    Orientation::from_exif_chunk(tiff)
}

/// What the boxes say about the primary item, read here before libheif sees the file
/// (libheif 1.15 has no call for either): whether it has an `irot` or `imir` property, and,
/// for a `grid` or `iovl` (overlay) item, the canvas it declares. libheif reports a grid's
/// `ispe` as its size but allocates the canvas its descriptor names, up to 32768x32768, so
/// that canvas is checked too. A file whose boxes cannot be followed this far is refused: its
/// limits could not be checked.
struct Primary {
    transformed: bool,
    canvas: Option<(u32, u32)>,
}

/// The largest `meta` box read; camera files have a few KiB.
const MAX_META_BYTES: u64 = 4 << 20;

fn inspect(input: &Path) -> Result<Primary, WorkerError> {
    let broken = |why: &str| WorkerError::DecodeFailed(format!("HEIF boxes: {why}"));
    let mut file = File::open(input)?;
    let len = file.metadata()?.len();
    // Top-level boxes are skipped by seeking: `mdat` may come before `meta`.
    let mut at = 0u64;
    let meta = loop {
        let mut head = [0u8; 16];
        file.seek(SeekFrom::Start(at))?;
        let got = read_up_to(&mut file, &mut head)?;
        if got < 8 {
            return Err(broken("no meta box"));
        }
        let size32 = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let (header, size) = match size32 {
            0 => (8, len - at),
            1 if got == 16 => (
                16,
                u64::from_be_bytes(head[8..16].try_into().unwrap_or([0; 8])),
            ),
            1 => return Err(broken("a box header is cut short")),
            n => (8, n),
        };
        if size < header || at.checked_add(size).is_none_or(|end| end > len) {
            return Err(broken("a box runs past the end of the file"));
        }
        if &head[4..8] == b"meta" {
            if size - header > MAX_META_BYTES {
                return Err(broken("the meta box is over 4 MiB"));
            }
            let mut body = vec![0u8; (size - header) as usize];
            file.seek(SeekFrom::Start(at + header))?;
            file.read_exact(&mut body)?;
            break body;
        }
        at += size;
    };
    let facts = boxes::primary(&meta).ok_or_else(|| broken("the primary item's boxes"))?;
    let canvas = match &facts.data {
        None => None,
        Some(location) => {
            let mut data = Vec::new();
            for &(offset, length) in &location.extents {
                let want = (32 - data.len()) as u64;
                let length = if length == 0 { want } else { length.min(want) };
                if location.idat {
                    let idat = facts.idat.ok_or_else(|| broken("no idat box"))?;
                    let start = usize::try_from(offset).map_err(|_| broken("idat offset"))?;
                    let end = start.saturating_add(length as usize).min(idat.1);
                    data.extend_from_slice(
                        meta.get(idat.0 + start.min(end)..idat.0 + end)
                            .unwrap_or(&[]),
                    );
                } else {
                    let mut part = vec![0u8; length as usize];
                    file.seek(SeekFrom::Start(offset))?;
                    let got = read_up_to(&mut file, &mut part)?;
                    data.extend_from_slice(&part[..got]);
                }
                if data.len() >= 32 {
                    break;
                }
            }
            Some(
                boxes::canvas(&facts.kind, &data)
                    .ok_or_else(|| broken("the grid or overlay descriptor"))?,
            )
        }
    };
    Ok(Primary {
        transformed: facts.transformed,
        canvas,
    })
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> Result<usize, WorkerError> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
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

    /// Where an item's data lies: file offsets, or offsets into the `idat` box.
    pub(super) struct Location {
        pub idat: bool,
        pub extents: Vec<(u64, u64)>,
    }

    pub(super) struct Facts {
        pub transformed: bool,
        /// The primary item's type (`hvc1`, `av01`, `grid`, `iovl`, ...).
        pub kind: [u8; 4],
        /// For a `grid` or `iovl` item, where its descriptor is.
        pub data: Option<Location>,
        /// The `idat` body, as (start, len) within the `meta` body.
        pub idat: Option<(usize, usize)>,
    }

    fn be_n(bytes: &[u8], at: usize, len: usize) -> Option<u64> {
        let b = bytes.get(at..at.checked_add(len)?)?;
        Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// `meta` is the body of the `meta` box (a FullBox: version and flags first).
    pub(super) fn primary(meta: &[u8]) -> Option<Facts> {
        let list = children(meta.get(4..)?)?;
        let pitm = find(&list, b"pitm")?;
        let primary = if *pitm.first()? == 0 {
            be(pitm, 4, 2)?
        } else {
            be(pitm, 4, 4)?
        };

        // Item type, from `iinf`'s `infe` (version 2 and 3 carry it).
        let iinf = find(&list, b"iinf")?;
        let count_len = if *iinf.first()? == 0 { 2 } else { 4 };
        let mut kind = [0u8; 4];
        for (k, infe) in children(iinf.get(4 + count_len..)?)? {
            if &k != b"infe" {
                continue;
            }
            let version = *infe.first()?;
            let (id, after) = match version {
                2 => (be(infe, 4, 2)?, 6),
                3 => (be(infe, 4, 4)?, 8),
                _ => continue,
            };
            if id == primary {
                kind = infe.get(after + 2..after + 6)?.try_into().ok()?;
            }
        }

        // Properties: irot / imir associated with the primary item.
        let iprp = children(find(&list, b"iprp")?)?;
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

        // Where a derived item's descriptor is, from `iloc`.
        // `list` borrows from `meta`, so its bodies' places are offsets into it.
        let idat = find(&list, b"idat")
            .map(|body| (body.as_ptr() as usize - meta.as_ptr() as usize, body.len()));
        let data = if &kind == b"grid" || &kind == b"iovl" {
            Some(location(find(&list, b"iloc")?, primary)?)
        } else {
            None
        };
        Some(Facts {
            transformed,
            kind,
            data,
            idat,
        })
    }

    fn location(iloc: &[u8], wanted: u32) -> Option<Location> {
        let version = *iloc.first()?;
        let sizes = be(iloc, 4, 1)?;
        let (off_len, len_len) = ((sizes >> 4) as usize, (sizes & 15) as usize);
        let sizes = be(iloc, 5, 1)?;
        let base_len = (sizes >> 4) as usize;
        let index_len = if version == 1 || version == 2 {
            (sizes & 15) as usize
        } else {
            0
        };
        let (count, mut at) = if version < 2 {
            (be(iloc, 6, 2)?, 8)
        } else {
            (be(iloc, 6, 4)?, 10)
        };
        for _ in 0..count {
            let id_len = if version < 2 { 2 } else { 4 };
            let id = be(iloc, at, id_len)?;
            at += id_len;
            let method = if version == 1 || version == 2 {
                let m = be(iloc, at, 2)? & 15;
                at += 2;
                m
            } else {
                0
            };
            at += 2; // data_reference_index
            let base = be_n(iloc, at, base_len)?;
            at += base_len;
            let extents = be(iloc, at, 2)?;
            at += 2;
            let mut list = Vec::new();
            for _ in 0..extents {
                at += index_len;
                let offset = be_n(iloc, at, off_len)?;
                at += off_len;
                let length = be_n(iloc, at, len_len)?;
                at += len_len;
                list.push((base.checked_add(offset)?, length));
            }
            if id == wanted {
                return match method {
                    0 => Some(Location {
                        idat: false,
                        extents: list,
                    }),
                    1 => Some(Location {
                        idat: true,
                        extents: list,
                    }),
                    _ => None,
                };
            }
        }
        None
    }

    /// The output size a `grid` or `iovl` descriptor declares.
    pub(super) fn canvas(kind: &[u8; 4], data: &[u8]) -> Option<(u32, u32)> {
        let flags = *data.get(1)?;
        let at = if kind == b"grid" { 4 } else { 10 };
        let n = if flags & 1 == 1 { 4 } else { 2 };
        Some((be(data, at, n)?, be(data, at + n, n)?))
    }
}
