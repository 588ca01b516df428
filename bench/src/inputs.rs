//! Deterministic inputs: the same seed and sizes give the same bytes, so runs on different
//! machines and days measure the same work. Files are cached by name (which holds every
//! parameter) and made once.

use super::peers::Peer;
use anyhow::{bail, Context};
use image::{ImageBuffer, Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped whenever a generator changes, so old cached files are not mistaken for new ones.
const GENERATION: u32 = 2;

/// SplitMix64: tiny, fast, and the same on every platform and crate version.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5EED_5A7C_4E15_0001)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

fn cached(
    dir: &Path,
    name: String,
    make: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
        return Ok(path);
    }
    // Written aside and renamed, so an interrupted run never leaves a half file in the cache.
    let partial = path.with_extension("partial");
    make(&partial).with_context(|| format!("generating {}", path.display()))?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// A photo-like JPEG (quality 90): smooth colour fields like sky and walls, mid-sized
/// texture, and per-pixel sensor noise, which is what makes a phone photo's entropy decoding
/// cost what it does. A 24 MP one comes out at about 10 MB.
pub fn photo(dir: &Path, width: u32, height: u32, seed: u64) -> anyhow::Result<PathBuf> {
    let name = format!("photo-{width}x{height}-s{seed}-g{GENERATION}.jpg");
    cached(dir, name, |path| {
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
                // Triangular noise in -15..=15 (sum of two uniform draws), each channel its own.
                let draw = |shift: usize| ((n >> shift) & 31) as i32;
                let noise = (draw(10 * c) + draw(10 * c + 5) - 31) / 2;
                let v = i32::from(out[c]) + (i32::from(tex[c]) - 128) + noise;
                out[c] = v.clamp(0, 255) as u8;
            }
        }
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90).encode_image(&img)?;
        Ok(())
    })
}

/// A speech-like mono WAV, 48 kHz s16: a voice whose pitch drifts, with syllables, pauses
/// and a little noise (the same shape as fixtures/make-bench-av.sh made with ffmpeg).
pub fn voice_wav(dir: &Path, seconds: u32, seed: u64) -> anyhow::Result<PathBuf> {
    let name = format!("voice-{seconds}s-s{seed}-g{GENERATION}.wav");
    cached(dir, name, |path| {
        const RATE: u32 = 48_000;
        let mut rng = Rng::new(seed);
        let n = (seconds * RATE) as usize;
        let mut data = Vec::with_capacity(44 + 2 * n);
        data.extend_from_slice(b"RIFF");
        data.extend_from_slice(&(36 + 2 * n as u32).to_le_bytes());
        data.extend_from_slice(b"WAVEfmt ");
        data.extend_from_slice(&16u32.to_le_bytes());
        data.extend_from_slice(&1u16.to_le_bytes()); // PCM
        data.extend_from_slice(&1u16.to_le_bytes()); // mono
        data.extend_from_slice(&RATE.to_le_bytes());
        data.extend_from_slice(&(RATE * 2).to_le_bytes());
        data.extend_from_slice(&2u16.to_le_bytes());
        data.extend_from_slice(&16u16.to_le_bytes());
        data.extend_from_slice(b"data");
        data.extend_from_slice(&(2 * n as u32).to_le_bytes());
        let tau = std::f64::consts::TAU;
        let mut phase = 0.0f64;
        for i in 0..n {
            let t = i as f64 / f64::from(RATE);
            let pitch = 150.0 + 20.0 * (tau * 0.3 * t).sin();
            phase += tau * pitch / f64::from(RATE);
            let voiced = 0.5 * phase.sin() + 0.2 * (3.0 * phase).sin();
            let syllables = (tau * 4.0 * t).sin().max(0.0);
            let pause = if t % 7.0 < 5.5 { 1.0 } else { 0.02 };
            let noise = 0.003 * (f64::from(rng.unit()) - 0.5);
            let s = (voiced * syllables * pause + noise).clamp(-1.0, 1.0);
            data.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes());
        }
        Ok(std::fs::write(path, data)?)
    })
}

/// A voice note as a phone sends it (AAC in M4A), made from [`voice_wav`] with ffmpeg.
pub fn voice_note(dir: &Path, seconds: u32, seed: u64, ffmpeg: &Peer) -> anyhow::Result<PathBuf> {
    let wav = voice_wav(dir, seconds, seed)?;
    let name = format!("voice-{seconds}s-s{seed}-g{GENERATION}.m4a");
    cached(dir, name, |path| {
        run_ffmpeg(
            ffmpeg,
            &[
                "-i".as_ref(),
                wav.as_os_str(),
                "-c:a".as_ref(),
                "aac".as_ref(),
                "-b:a".as_ref(),
                "64k".as_ref(),
                "-f".as_ref(),
                "mp4".as_ref(),
                path.as_os_str(),
            ],
        )
    })
}

/// A phone-like clip: H.264 High at CRF 20, 30 fps, with an AAC track, from ffmpeg's
/// deterministic test sources. Needs the ffmpeg CLI.
pub fn video(
    dir: &Path,
    (width, height, seconds): (u32, u32, u32),
    ffmpeg: &Peer,
) -> anyhow::Result<PathBuf> {
    let name = format!("video-{width}x{height}-{seconds}s-g{GENERATION}.mp4");
    cached(dir, name, |path| {
        let video = format!("testsrc2=s={width}x{height}:r=30:d={seconds}");
        let audio = format!("sine=f=440:sample_rate=48000:d={seconds}");
        run_ffmpeg(
            ffmpeg,
            &[
                "-f".as_ref(),
                "lavfi".as_ref(),
                "-i".as_ref(),
                video.as_ref(),
                "-f".as_ref(),
                "lavfi".as_ref(),
                "-i".as_ref(),
                audio.as_ref(),
                "-c:v".as_ref(),
                "libx264".as_ref(),
                "-preset".as_ref(),
                "fast".as_ref(),
                "-crf".as_ref(),
                "20".as_ref(),
                "-pix_fmt".as_ref(),
                "yuv420p".as_ref(),
                "-c:a".as_ref(),
                "aac".as_ref(),
                "-b:a".as_ref(),
                "128k".as_ref(),
                "-f".as_ref(),
                "mp4".as_ref(),
                path.as_os_str(),
            ],
        )
    })
}

/// Random bytes: an opaque file (sniffed as `file`, never processed), like an end-to-end
/// encrypted attachment.
pub fn blob(dir: &Path, bytes: usize, seed: u64) -> anyhow::Result<PathBuf> {
    let name = format!("blob-{bytes}-s{seed}-g{GENERATION}.bin");
    cached(dir, name, |path| {
        let mut data = vec![0u8; bytes];
        Rng::new(seed).fill(&mut data);
        Ok(std::fs::write(path, data)?)
    })
}

fn run_ffmpeg(ffmpeg: &Peer, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let Some(bin) = &ffmpeg.path else {
        bail!("this input is made with the ffmpeg CLI, which is not installed");
    };
    let out = Command::new(bin)
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("ffmpeg: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let read = |p: PathBuf| std::fs::read(p).unwrap();
        let photo_a = read(photo(a.path(), 96, 64, 7).unwrap());
        assert_eq!(photo_a, read(photo(b.path(), 96, 64, 7).unwrap()));
        assert_ne!(photo_a, read(photo(b.path(), 96, 64, 8).unwrap()));
        assert!(image::load_from_memory(&photo_a).is_ok_and(|i| i.width() == 96));
        let voice_a = read(voice_wav(a.path(), 1, 7).unwrap());
        assert_eq!(voice_a, read(voice_wav(b.path(), 1, 7).unwrap()));
        assert_eq!(voice_a.len(), 44 + 2 * 48_000);
        assert_eq!(
            read(blob(a.path(), 1000, 7).unwrap()),
            read(blob(b.path(), 1000, 7).unwrap())
        );
    }
}
