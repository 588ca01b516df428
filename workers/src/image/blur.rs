//! The `blurred` variant is shown before a recipient opts in to a picture, so it must give away
//! shapes and colours only. It is blurred at its small output size, where even a true Gaussian
//! costs well under a millisecond.

use image::DynamicImage;

/// A Gaussian blur with `sigma` in output pixels; 0 leaves the image alone.
pub fn blur(image: &DynamicImage, sigma: f32) -> DynamicImage {
    if sigma <= 0.0 || !sigma.is_finite() {
        return image.clone();
    }
    image.blur(sigma)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_smears_a_hard_edge() {
        let mut img = image::RgbImage::new(32, 32);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = if x < 16 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            };
        }
        let out = blur(&DynamicImage::ImageRgb8(img), 4.0).to_rgb8();
        let edge = out.get_pixel(16, 16)[0];
        assert!(
            edge > 40 && edge < 215,
            "edge pixel {edge} should be mid-grey"
        );
    }
}
