//! Image originals lose their location (`original_metadata`) as they stream in, losslessly:
//! no pixel is decoded or re-encoded. Each format is a state machine over its own framing
//! (`jpeg`: segments and entropy-coded data; `png`: chunks; `webp`: RIFF chunks; `heif`: the
//! `meta` box's item locations, for HEIC/HEIF and AVIF) that passes
//! pixel data through as it comes and holds back only a metadata segment or chunk, each
//! bounded: a JPEG segment is at most 64 KiB, and a PNG or WebP metadata chunk over
//! [`CHUNK_CAP`] is not read at all (PNG drops it, WebP overwrites it with an empty one of
//! the same length as it streams). `exif` zeroes the GPS IFD in place; `xmp` tells whether a
//! packet says where, and blanks it.
//!
//! Untrusted bytes: nothing here panics or allocates past those bounds on any input. Where a
//! structure is broken (a marker where none can be, a chunk length over 2³¹, a RIFF header
//! that is not one) the rest of the file passes through unchanged: such a file is no longer
//! the format, and no reader finds its metadata either. A metadata segment cut short by the
//! end of the upload is dropped.

mod exif;
mod heif;
mod jpeg;
mod png;
mod webp;
mod xmp;

use crate::domain::sniff::Sniffed;
use crate::domain::Kind;
use serde::Deserialize;

/// What happens to an image original's metadata at ingest (`original_metadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginalMetadata {
    /// GPS and other location tags go (EXIF's GPS IFD, XMP that names a place, IPTC's place
    /// names); everything else stays.
    StripLocation,
    /// Everything goes but the orientation and the colour profile (ICC).
    StripAll,
    /// The bytes are stored as sent.
    Keep,
}

/// The most of a PNG or WebP metadata chunk that is held to be looked at.
pub const CHUNK_CAP: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Location,
    All,
}

/// A streaming filter over one image original.
pub enum Filter {
    Jpeg(jpeg::Jpeg),
    Png(png::Png),
    Webp(webp::Webp),
    Heif(heif::Heif),
}

impl Filter {
    /// The filter for an upload sniffed as `sniffed`; `None` when its bytes are stored as
    /// sent (`keep`, a `file`, audio, video, an image format without a filter here).
    pub fn new(policy: OriginalMetadata, sniffed: &Sniffed) -> Option<Filter> {
        let mode = match policy {
            OriginalMetadata::StripLocation => Mode::Location,
            OriginalMetadata::StripAll => Mode::All,
            OriginalMetadata::Keep => return None,
        };
        if sniffed.kind != Kind::Image {
            return None;
        }
        Some(match sniffed.mime {
            "image/jpeg" => Filter::Jpeg(jpeg::Jpeg::new(mode)),
            "image/png" => Filter::Png(png::Png::new(mode)),
            "image/webp" => Filter::Webp(webp::Webp::new(mode)),
            "image/heic" | "image/avif" => Filter::Heif(heif::Heif::new(mode)),
            _ => return None,
        })
    }

    /// Takes the next bytes of the upload; appends to `out` what is to be stored.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self {
            Filter::Jpeg(f) => f.push(input, out),
            Filter::Png(f) => f.push(input, out),
            Filter::Webp(f) => f.push(input, out),
            Filter::Heif(f) => f.push(input, out),
        }
    }

    /// The upload has ended: appends what is still held back, except a metadata segment the
    /// end cut short.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Filter::Jpeg(f) => f.finish(out),
            Filter::Png(f) => f.finish(out),
            Filter::Webp(f) => f.finish(out),
            Filter::Heif(f) => f.finish(out),
        }
    }
}

/// Moves bytes of `input` into `head` until it is whole (`*got == N`): whether it is.
fn fill<const N: usize>(head: &mut [u8; N], got: &mut usize, input: &mut &[u8]) -> bool {
    let n = (N - *got).min(input.len());
    head[*got..*got + n].copy_from_slice(&input[..n]);
    *input = &input[n..];
    *got += n;
    *got == N
}

/// Passes up to `left` bytes of `input` through to `out` (or drops them, without `out`):
/// whether `left` has run out.
fn pass(left: &mut u64, input: &mut &[u8], out: Option<&mut Vec<u8>>) -> bool {
    let n = (*left).min(input.len() as u64) as usize;
    if let Some(out) = out {
        out.extend_from_slice(&input[..n]);
    }
    *input = &input[n..];
    *left -= n as u64;
    *left == 0
}

#[cfg(test)]
mod tests;
