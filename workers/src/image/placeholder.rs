//! Blurhash and thumbhash strings, always computed from a tiny downscale (at most 100 px, the
//! thumbhash limit): their cost grows with pixel count and their output cannot show more detail.

use super::resize;
use crate::{Placeholder, WorkerError};
use image::{DynamicImage, RgbaImage};

/// The longest edge the placeholder encoders are given.
pub const TINY_EDGE: u32 = 100;

/// Both placeholder strings for `tiny`, which must already fit in [`TINY_EDGE`] (see [`tiny`]).
pub fn placeholders(
    tiny: &DynamicImage,
    components: (u32, u32),
) -> Result<Placeholder, WorkerError> {
    let rgba = tiny.to_rgba8();
    Ok(Placeholder {
        blurhash: blurhash(&rgba, components)?,
        thumbhash: thumbhash(&rgba)?,
    })
}

pub fn blurhash(tiny: &RgbaImage, components: (u32, u32)) -> Result<String, WorkerError> {
    let (w, h) = tiny.dimensions();
    blurhash::encode(components.0, components.1, w, h, tiny.as_raw())
        .map_err(|e| WorkerError::EncodeFailed(format!("blurhash: {e}")))
}

/// Base64 (standard alphabet, no padding) of the thumbhash bytes.
pub fn thumbhash(tiny: &RgbaImage) -> Result<String, WorkerError> {
    let (w, h) = tiny.dimensions();
    // The thumbhash encoder asserts this; an error is kinder than a panic.
    if w > TINY_EDGE || h > TINY_EDGE {
        return Err(WorkerError::EncodeFailed(format!(
            "thumbhash input {w}x{h} over {TINY_EDGE} px"
        )));
    }
    let hash = thumbhash::rgba_to_thumb_hash(w as usize, h as usize, tiny.as_raw());
    Ok(base64_nopad(&hash))
}

/// Downscales `image` to fit the placeholder encoders.
pub fn tiny(image: &DynamicImage) -> Result<DynamicImage, WorkerError> {
    let (w, h) = resize::fit(image.width(), image.height(), TINY_EDGE);
    resize::resize(image, w, h)
}

/// Standard-alphabet base64 without padding; thumbhashes are ~25 bytes, not worth a dependency.
fn base64_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_without_padding() {
        assert_eq!(base64_nopad(b""), "");
        assert_eq!(base64_nopad(b"f"), "Zg");
        assert_eq!(base64_nopad(b"fo"), "Zm8");
        assert_eq!(base64_nopad(b"foo"), "Zm9v");
        assert_eq!(base64_nopad(b"foob"), "Zm9vYg");
        assert_eq!(base64_nopad(&[0xfb, 0xff]), "+/8");
    }
}
