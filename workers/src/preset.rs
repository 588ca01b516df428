//! Presets: sizes, codecs, qualities and limits, read from TOML (`presets/default.toml`).

use serde::Deserialize;
use std::path::Path;

/// The preset shipped with satchel, compiled in so a bare binary still has one.
pub const DEFAULT_TOML: &str = include_str!("../../presets/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presets {
    pub image: ImagePreset,
    #[serde(default)]
    pub audio: AudioPreset,
    #[serde(default)]
    pub video: VideoPreset,
}

impl Presets {
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read preset {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("invalid preset {}: {e}", path.display()))
    }
}

impl Default for Presets {
    fn default() -> Self {
        Self::from_toml(DEFAULT_TOML).expect("the built-in preset parses")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Webp,
    Jpeg,
}

impl ImageFormat {
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Webp => "image/webp",
            ImageFormat::Jpeg => "image/jpeg",
        }
    }
}

/// One still-image output: fit inside `max_edge` × `max_edge`, never upscaled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOutputPreset {
    pub max_edge: u32,
    pub format: ImageFormat,
    /// 1-100.
    pub quality: u8,
    /// Gaussian blur radius in output pixels; 0 or absent means no blur.
    #[serde(default)]
    pub blur_sigma: f32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePreset {
    /// Largest width × height accepted, checked from the header before any pixel is decoded.
    pub max_pixels: u64,
    /// Largest width or height accepted.
    pub max_dimension: u32,
    /// Largest number of frames in an animation (only the first is used).
    pub max_frames: u32,
    /// Upper bound on decoder allocations, in bytes.
    pub max_alloc_bytes: u64,
    pub thumbnail: ImageOutputPreset,
    pub preview: ImageOutputPreset,
    pub blurred: ImageOutputPreset,
    /// Blurhash components along x and y (1-9).
    pub blurhash_components: (u32, u32),
}

/// Filled in by the audio pipeline.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AudioPreset {}

/// Filled in by the video pipeline.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VideoPreset {}
