//! Writing variants: lossy WebP through libwebp, JPEG through `jpeg-encoder`. Both start from
//! bare pixels, so nothing of the original's metadata (EXIF, GPS, ICC, XMP) can reach an output.

use crate::{preset::ImageFormat, WorkerError};
use image::DynamicImage;

/// The libwebp settings besides quality that an image job uses; `examples/webp_table.rs`
/// measures the alternatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebpTuning {
    /// libwebp's speed/size trade-off, 0 (fast) to 6 (small); libwebp's own default is 4.
    pub method: i32,
    /// libwebp's `thread_level`: 1 lets the encoder use a second thread where it can.
    pub thread_level: i32,
    /// libwebp's "sharp" RGB to YUV conversion: slower, keeps colour edges crisper.
    pub sharp_yuv: bool,
    /// libwebp's spatial noise shaping, 0-100 (its default 50): how far bits move from flat
    /// areas to busy ones.
    pub sns_strength: i32,
}

impl WebpTuning {
    /// A preset's method and spatial noise shaping (`webp_method`, `webp_sns`), each clamped to
    /// what libwebp takes; one thread, no sharp YUV.
    pub fn of(method: i32, sns_strength: i32) -> Self {
        Self {
            method: method.clamp(0, 6),
            thread_level: 0,
            sharp_yuv: false,
            sns_strength: sns_strength.clamp(0, 100),
        }
    }
}

/// Encodes `image` (8-bit grey, RGB or RGBA, see `resize::normalize`) as `format`; `webp` is
/// used only for WebP.
pub fn encode(
    image: &DynamicImage,
    format: ImageFormat,
    quality: u8,
    webp: WebpTuning,
) -> Result<Vec<u8>, WorkerError> {
    match format {
        ImageFormat::Webp => encode_webp(image, quality, webp),
        ImageFormat::Jpeg => encode_jpeg(image, quality),
    }
}

/// Encodes `image` as lossy WebP with `tuning`.
pub fn encode_webp(
    image: &DynamicImage,
    quality: u8,
    tuning: WebpTuning,
) -> Result<Vec<u8>, WorkerError> {
    let (w, h) = (image.width(), image.height());
    // WebP has no grey mode; RGB of a small variant is cheap to make.
    let rgb;
    let encoder = match image {
        DynamicImage::ImageRgba8(rgba) => webp::Encoder::from_rgba(rgba.as_raw(), w, h),
        DynamicImage::ImageRgb8(px) => webp::Encoder::from_rgb(px.as_raw(), w, h),
        other => {
            rgb = other.to_rgb8();
            webp::Encoder::from_rgb(rgb.as_raw(), w, h)
        }
    };
    let mut config = webp::WebPConfig::new()
        .map_err(|()| WorkerError::EncodeFailed("libwebp version mismatch".into()))?;
    config.quality = f32::from(quality.clamp(1, 100));
    config.method = tuning.method;
    config.thread_level = tuning.thread_level;
    config.use_sharp_yuv = i32::from(tuning.sharp_yuv);
    config.sns_strength = tuning.sns_strength;
    let memory = encoder
        .encode_advanced(&config)
        .map_err(|e| WorkerError::EncodeFailed(format!("webp: {e:?}")))?;
    Ok(memory.to_vec())
}

fn encode_jpeg(image: &DynamicImage, quality: u8) -> Result<Vec<u8>, WorkerError> {
    let too_big = || WorkerError::EncodeFailed("JPEG sides are limited to 65535 px".into());
    let w = u16::try_from(image.width()).map_err(|_| too_big())?;
    let h = u16::try_from(image.height()).map_err(|_| too_big())?;
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100));
    let result = match image {
        DynamicImage::ImageLuma8(px) => {
            encoder.encode(px.as_raw(), w, h, jpeg_encoder::ColorType::Luma)
        }
        DynamicImage::ImageRgb8(px) => {
            encoder.encode(px.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        }
        other => {
            let flat = flatten_on_white(other);
            encoder.encode(flat.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        }
    };
    result.map_err(|e| WorkerError::EncodeFailed(format!("jpeg: {e}")))?;
    Ok(out)
}

/// JPEG has no alpha; transparent areas become white, as chat clients draw them on light themes
/// and a black box (what dropping alpha gives) reads as a broken picture.
pub fn flatten_on_white(image: &DynamicImage) -> image::RgbImage {
    let rgba = image.to_rgba8();
    let mut out = image::RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            dst[c] = ((u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_pixels_flatten_to_white() {
        let mut img = image::RgbaImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgba([10, 20, 30, 0]));
        img.put_pixel(1, 0, image::Rgba([10, 20, 30, 255]));
        let flat = flatten_on_white(&DynamicImage::ImageRgba8(img));
        assert_eq!(flat.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(flat.get_pixel(1, 0).0, [10, 20, 30]);
    }
}
