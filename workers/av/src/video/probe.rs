//! What a video holds, read from the container before any frame is decoded, and the preset's
//! limits applied to it.

use crate::av::input::Input;
use crate::preset::VideoPreset;
use crate::WorkerError;
use ffmpeg::codec::Id;
use ffmpeg::{ffi, media};
use ffmpeg_next as ffmpeg;

/// Video codecs we let FFmpeg decode: what phones, browsers and screen recorders produce.
const ACCEPTED_VIDEO: &[Id] = &[Id::H264, Id::HEVC, Id::VP8, Id::VP9, Id::AV1, Id::MPEG4];

pub struct VideoFacts {
    pub index: usize,
    pub codec: Id,
    /// Coded size, before rotation.
    pub width: u32,
    pub height: u32,
    /// Clockwise degrees to turn the coded picture to show it upright: 0, 90, 180 or 270.
    pub rotation: u32,
    pub fps: f64,
    pub is_yuv420p: bool,
}

impl VideoFacts {
    /// Size as displayed, rotation applied.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

pub struct AudioFacts {
    pub index: usize,
    pub codec: Id,
}

pub struct Facts {
    pub video: Option<VideoFacts>,
    pub audio: Option<AudioFacts>,
    pub duration_ms: u64,
    /// Whole-file bits per second, as the container reports it (0 if unknown).
    pub bit_rate: u64,
}

pub fn inspect(input: &mut Input, preset: &VideoPreset) -> Result<Facts, WorkerError> {
    let ctx = input.context();
    if ctx.nb_streams() > preset.max_streams {
        return Err(WorkerError::UnsupportedCodec(format!(
            "{} streams; at most {} are accepted",
            ctx.nb_streams(),
            preset.max_streams
        )));
    }
    let duration_ms = if ctx.duration() > 0 {
        (ctx.duration() as u64).div_ceil(1000)
    } else {
        0
    };
    if duration_ms > u64::from(preset.max_duration_s) * 1000 {
        return Err(WorkerError::TooLong(format!(
            "the video lasts {} s; at most {} s are accepted",
            duration_ms / 1000,
            preset.max_duration_s
        )));
    }
    let bit_rate = u64::try_from(ctx.bit_rate()).unwrap_or(0);

    let video = match ctx.streams().best(media::Type::Video) {
        None => None,
        Some(stream) => {
            let params = stream.parameters();
            let codec = params.id();
            if !ACCEPTED_VIDEO.contains(&codec) {
                return Err(WorkerError::UnsupportedCodec(format!(
                    "video codec {codec:?} is not accepted"
                )));
            }
            // SAFETY: reading plain fields of the stream's codec parameters.
            let (width, height, format) = unsafe {
                let p = params.as_ptr();
                ((*p).width, (*p).height, (*p).format)
            };
            let (width, height) = (width.max(0) as u32, height.max(0) as u32);
            if width == 0 || height == 0 {
                return Err(WorkerError::DecodeFailed(
                    "the video has no picture size".into(),
                ));
            }
            if width.max(height) > preset.max_dimension {
                return Err(WorkerError::TooManyPixels(format!(
                    "{width}x{height}; no side may exceed {}",
                    preset.max_dimension
                )));
            }
            if u64::from(width) * u64::from(height) > preset.max_pixels {
                return Err(WorkerError::TooManyPixels(format!(
                    "{width}x{height}; at most {} pixels per frame",
                    preset.max_pixels
                )));
            }
            let fps = [stream.avg_frame_rate(), stream.rate()]
                .into_iter()
                .find(|r| r.numerator() > 0 && r.denominator() > 0)
                .map_or(0.0, f64::from);
            if fps > f64::from(preset.max_fps) {
                // Frame rate × frame size is the pixel rate a decoder must sustain.
                return Err(WorkerError::TooManyPixels(format!(
                    "{fps:.0} frames per second; at most {} are accepted",
                    preset.max_fps
                )));
            }
            let frames = u64::try_from(stream.frames()).unwrap_or(0);
            let estimated = (fps * duration_ms as f64 / 1000.0) as u64;
            if frames.max(estimated) > preset.max_frames {
                return Err(WorkerError::TooManyPixels(format!(
                    "{} frames; at most {} are accepted",
                    frames.max(estimated),
                    preset.max_frames
                )));
            }
            Some(VideoFacts {
                index: stream.index(),
                codec,
                width,
                height,
                rotation: rotation(&stream),
                fps,
                is_yuv420p: format == ffi::AVPixelFormat::AV_PIX_FMT_YUV420P as i32,
            })
        }
    };
    let audio = ctx.streams().best(media::Type::Audio).map(|s| AudioFacts {
        index: s.index(),
        codec: s.parameters().id(),
    });
    if let Some(audio) = &audio {
        if !crate::audio::ACCEPTED_CODECS.contains(&audio.codec) {
            return Err(WorkerError::UnsupportedCodec(format!(
                "audio codec {:?} is not accepted",
                audio.codec
            )));
        }
    }
    if video.is_none() && audio.is_none() {
        return Err(WorkerError::DecodeFailed("no audio or video stream".into()));
    }
    Ok(Facts {
        video,
        audio,
        duration_ms,
        bit_rate,
    })
}

/// Reads the display matrix phones write instead of rotating pixels.
fn rotation(stream: &ffmpeg::format::stream::Stream) -> u32 {
    // SAFETY: the side data belongs to the stream and is 9 i32s when present.
    let degrees = unsafe {
        let mut size = 0usize;
        let matrix = ffi::av_stream_get_side_data(
            stream.as_ptr(),
            ffi::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
            &mut size,
        );
        if matrix.is_null() || size < 9 * 4 {
            return 0;
        }
        ffi::av_display_rotation_get(matrix as *const i32)
    };
    if !degrees.is_finite() {
        return 0;
    }
    // FFmpeg reports the counter-clockwise angle; turn it into clockwise quarter turns.
    let clockwise = (-degrees).rem_euclid(360.0);
    (((clockwise / 90.0).round() as u32) % 4) * 90
}
