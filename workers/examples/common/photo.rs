//! The bench's photo-like JPEG (bench/src/inputs.rs `photo`), made the same way so that the
//! same seed and size give the same file: smooth colour fields, mid-sized texture and per-pixel
//! sensor noise, from a seeded SplitMix64. Shared by the measuring examples (`#[path]`).

use image::{ImageBuffer, Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// The photo of `width`×`height` and `seed`, generated once and cached in `dir`.
pub fn photo(dir: &Path, width: u32, height: u32, seed: u64) -> PathBuf {
    let path = dir.join(format!("photo-{width}x{height}-s{seed}-g2.jpg"));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        return path;
    }
    let mut rng = Rng::new(seed);
    let layer = |rng: &mut Rng, cell: u32, amplitude: f32| -> RgbImage {
        let (gw, gh) = (width.div_ceil(cell) + 1, height.div_ceil(cell) + 1);
        let grid = ImageBuffer::from_fn(gw, gh, |_, _| {
            let base = rng.unit();
            Rgb([0, 1, 2].map(|_| {
                let c = 128.0 + amplitude * (base - 0.5) + 0.4 * amplitude * (rng.unit() - 0.5);
                c.clamp(0.0, 255.0) as u8
            }))
        });
        image::imageops::resize(&grid, width, height, image::imageops::FilterType::Triangle)
    };
    let broad = layer(&mut rng, 400, 220.0);
    let texture = layer(&mut rng, 12, 60.0);
    let mut img = broad;
    for (out, tex) in img.pixels_mut().zip(texture.pixels()) {
        let n = rng.next_u64();
        for c in 0..3 {
            let draw = |shift: usize| ((n >> shift) & 31) as i32;
            let noise = (draw(10 * c) + draw(10 * c + 5) - 31) / 2;
            let v = i32::from(out[c]) + (i32::from(tex[c]) - 128) + noise;
            out[c] = v.clamp(0, 255) as u8;
        }
    }
    let partial = path.with_extension("partial");
    let file = std::io::BufWriter::new(std::fs::File::create(&partial).unwrap());
    image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90)
        .encode_image(&img)
        .unwrap();
    std::fs::rename(&partial, &path).unwrap();
    path
}

/// SplitMix64, as the bench seeds its inputs.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_5A7C_4E15_0001)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}
