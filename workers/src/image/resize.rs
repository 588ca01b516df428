//! Every downscale goes through `fast_image_resize` (SIMD convolution). CatmullRom rather than
//! Lanczos3: on the 1500x1000 -> 1280x853 preview step it measured about 1.4x faster with no
//! difference visible at these sizes (see `bench/benches/transforms.rs`, group `resize`).

use crate::WorkerError;
pub use fast_image_resize::FilterType;
use fast_image_resize::{ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

const FILTER: FilterType = FilterType::CatmullRom;

/// The size that fits `width` x `height` inside `max_edge` x `max_edge`, keeping the aspect
/// ratio and never growing.
pub fn fit(width: u32, height: u32, max_edge: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_edge || longest == 0 {
        return (width, height);
    }
    let scale = |len: u32| {
        let scaled =
            (u64::from(len) * u64::from(max_edge) + u64::from(longest) / 2) / u64::from(longest);
        (scaled as u32).max(1)
    };
    (scale(width), scale(height))
}

/// The largest even size with the same shape that fits `long` × `short` in the picture's own
/// orientation; never larger than the picture.
pub fn fit_box(w: u32, h: u32, long: u32, short: u32) -> (u32, u32) {
    let (box_w, box_h) = if w >= h { (long, short) } else { (short, long) };
    let scale = (f64::from(box_w) / f64::from(w))
        .min(f64::from(box_h) / f64::from(h))
        .min(1.0);
    let even = |x: f64| ((x.round() as u32) & !1).max(2);
    if scale >= 1.0 && (w | h) & 1 == 0 {
        return (w, h);
    }
    (even(f64::from(w) * scale), even(f64::from(h) * scale))
}

/// Resizes to exactly `width` x `height` (callers pass a size from [`fit`]). Returns a copy when
/// the size already matches, so callers can treat every output alike.
pub fn resize(src: &DynamicImage, width: u32, height: u32) -> Result<DynamicImage, WorkerError> {
    resize_with(src, width, height, FILTER)
}

/// [`resize`] with another convolution filter, for comparing them.
pub fn resize_with(
    src: &DynamicImage,
    width: u32,
    height: u32,
    filter: FilterType,
) -> Result<DynamicImage, WorkerError> {
    if (src.width(), src.height()) == (width, height) {
        return Ok(src.clone());
    }
    let mut dst = DynamicImage::new(width, height, src.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    Resizer::new()
        .resize(src, &mut dst, &options)
        .map_err(|e| WorkerError::EncodeFailed(format!("resize to {width}x{height}: {e}")))?;
    Ok(dst)
}

/// Brings any decoded pixel layout to the three the pipeline handles: 8-bit grey, RGB or RGBA.
/// 16-bit and float images (PNG) are narrowed here, once, at the decoded size.
pub fn normalize(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => {
            image
        }
        DynamicImage::ImageLumaA8(_) => DynamicImage::ImageRgba8(image.to_rgba8()),
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other if other.color().has_color() => DynamicImage::ImageRgb8(other.to_rgb8()),
        other => DynamicImage::ImageLuma8(other.to_luma8()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_and_never_grows() {
        assert_eq!(fit(6000, 4000, 1280), (1280, 853));
        assert_eq!(fit(4000, 6000, 320), (213, 320));
        assert_eq!(fit(200, 100, 1280), (200, 100));
        assert_eq!(fit(100_000, 1, 64), (64, 1));
    }

    #[test]
    fn resize_hits_the_requested_size() {
        let src = DynamicImage::new_rgba8(300, 200);
        let out = resize(&src, 150, 100).unwrap();
        assert_eq!((out.width(), out.height()), (150, 100));
        assert!(out.color().has_alpha());
    }

    #[test]
    fn fits_the_box_in_the_displayed_orientation_without_upscaling() {
        assert_eq!(fit_box(1920, 1080, 1280, 720), (1280, 720));
        assert_eq!(fit_box(1080, 1920, 1280, 720), (720, 1280));
        assert_eq!(fit_box(320, 240, 1280, 720), (320, 240));
        assert_eq!(fit_box(321, 241, 1280, 720), (320, 240));
        assert_eq!(fit_box(4000, 1000, 1280, 720), (1280, 320));
    }
}
