//! Presets: sizes, codecs, qualities and limits, read from TOML (`presets/default.toml`).

use serde::Deserialize;
use std::path::Path;

/// The preset shipped with satchel, compiled in so a bare binary still has one.
pub const DEFAULT_TOML: &str = include_str!("../../presets/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presets {
    pub image: ImagePreset,
    /// Absent sections fall back to the built-in preset's.
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

/// Method 2: `examples/webp_table.rs` measured libwebp's default, 4, at ~2.4× the encode CPU
/// of the 1280 px preview for ~5 % smaller files.
fn webp_method() -> i32 {
    2
}

/// libwebp's own default.
fn webp_sns() -> i32 {
    50
}

/// One still-image output: fit inside `max_edge` × `max_edge`, never upscaled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOutputPreset {
    pub max_edge: u32,
    pub format: ImageFormat,
    /// 1-100.
    pub quality: u8,
    /// WebP only: libwebp's method, 0 (fastest) to 6 (smallest at a given quality); absent, 2
    /// (libwebp's own default is 4).
    #[serde(default = "webp_method")]
    pub webp_method: i32,
    /// WebP only: libwebp's spatial noise shaping, 0-100 (how far bits move from flat areas to
    /// busy ones); absent, libwebp's default, 50.
    #[serde(default = "webp_sns")]
    pub webp_sns: i32,
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
    /// Largest number of frames in an animation (the stills use only the first).
    pub max_frames: u32,
    /// Upper bound on decoder allocations, in bytes.
    pub max_alloc_bytes: u64,
    pub thumbnail: ImageOutputPreset,
    pub preview: ImageOutputPreset,
    pub blurred: ImageOutputPreset,
    /// Blurhash components along x and y (1-9).
    pub blurhash_components: (u32, u32),
    /// The `animation` variant of animated GIF, WebP and APNG; absent, the built-in preset's.
    #[serde(default)]
    pub animation: AnimationPreset,
}

/// The `animation` variant: an animated GIF, WebP or APNG as a muted H.264 MP4 (yuv420p, even
/// dimensions, moov first), frame timing kept; and the limits on what is played.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnimationPreset {
    /// The output fits inside `max_long_edge` × `max_short_edge` in its own orientation; never
    /// upscaled.
    pub max_long_edge: u32,
    pub max_short_edge: u32,
    /// Longest animation accepted (one loop, delays as browsers play them), in seconds.
    pub max_duration_s: u32,
    /// Largest canvas (width × height) of an animation; also bounds each frame's own rectangle.
    pub max_frame_pixels: u64,
    /// Most canvas pixels over all frames (frames × width × height): what compositing and
    /// encoding cost, so a frame bomb (many large frames in a tiny file) is refused.
    pub max_total_pixels: u64,
    /// Wall-clock budget for the animation, in seconds; over it the job fails with `timed_out`.
    pub max_job_seconds: u32,
    /// x264 preset name (`ultrafast` ... `veryslow`).
    pub x264_preset: String,
    /// x264 constant rate factor, 0-51 (lower is better and larger).
    pub crf: u8,
    /// Encoder threads; 0 lets x264 pick from the core count.
    pub threads: u32,
}

/// The `voice` variant: mono Opus in Ogg, loudness-normalised, plus a waveform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioPreset {
    /// Longest input accepted, in seconds. The decoded mono signal is held in memory for the
    /// two loudness passes (4 bytes × 48 000 per second), so this also bounds memory.
    pub max_duration_s: u32,
    /// Wall-clock budget for one job, in seconds; over it the job fails with `timed_out`.
    pub max_job_seconds: u32,
    /// Opus bitrate in bits per second (speech: 24 000-32 000).
    pub bitrate: u32,
    /// libopus complexity, 0-10 (10 is libopus's and the ffmpeg CLI's default).
    pub complexity: u8,
    /// Integrated loudness target, EBU R128, in LUFS (e.g. -16 for speech on phones).
    pub loudness_target_lufs: f32,
    /// Largest gain applied to quiet recordings, in dB, so hiss is not boosted without end.
    pub max_gain_db: f32,
    /// Sample peak ceiling after gain, in dBFS: the gain is lowered rather than clip.
    pub peak_ceiling_dbfs: f32,
    /// Number of waveform values (64-100).
    pub waveform_points: u8,
}

/// Still images cut from a video (the `poster`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PosterPreset {
    pub format: ImageFormat,
    /// 1-100.
    pub quality: u8,
    /// WebP only: libwebp's method, 0 (fastest) to 6 (smallest at a given quality); absent, 2
    /// (libwebp's own default is 4).
    #[serde(default = "webp_method")]
    pub webp_method: i32,
    /// WebP only: libwebp's spatial noise shaping, 0-100 (how far bits move from flat areas to
    /// busy ones); absent, libwebp's default, 50.
    #[serde(default = "webp_sns")]
    pub webp_sns: i32,
    /// Longest edge; the poster is the video's displayed frame, never upscaled.
    pub max_edge: u32,
}

/// The `video` variant (H.264 + AAC in MP4) and the limits on what is accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoPreset {
    /// Longest input accepted, in seconds.
    pub max_duration_s: u32,
    /// Wall-clock budget for one job, in seconds; over it the job fails with `timed_out`.
    pub max_job_seconds: u32,
    /// Largest coded width or height accepted.
    pub max_dimension: u32,
    /// Largest width × height accepted; also handed to the decoder as its own limit.
    pub max_pixels: u64,
    /// Highest frame rate accepted (frames per second).
    pub max_fps: u32,
    /// Most frames accepted, counted from the header and again while decoding.
    pub max_frames: u64,
    /// Most streams (of any type) in the container.
    pub max_streams: u32,
    /// The output fits inside `max_long_edge` × `max_short_edge` in its displayed orientation.
    pub max_long_edge: u32,
    pub max_short_edge: u32,
    /// x264 preset name (`ultrafast` ... `veryslow`).
    pub x264_preset: String,
    /// x264 constant rate factor, 0-51 (lower is better and larger).
    pub crf: u8,
    /// Encoder threads; 0 lets x264 and the decoder pick from the core count.
    pub threads: u32,
    /// AAC bitrate in bits per second when the audio has to be re-encoded.
    pub audio_bitrate: u32,
    /// An input already H.264 + AAC and within the size box is copied, not re-encoded, when its
    /// overall bitrate is at most this many bits per second.
    pub remux_max_bitrate: u64,
    pub poster: PosterPreset,
}

impl Default for AnimationPreset {
    fn default() -> Self {
        Presets::default().image.animation
    }
}

impl Default for AudioPreset {
    fn default() -> Self {
        Presets::default().audio
    }
}

impl Default for VideoPreset {
    fn default() -> Self {
        Presets::default().video
    }
}
