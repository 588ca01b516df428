//! The video pipeline: a video in; `video` (H.264 + AAC in MP4, fitting 1280×720 as displayed),
//! `poster`, `thumbnail` and `blurred` out, plus the displayed size and duration.
//!
//! An audio-only MP4 yields only the `video` variant (AAC in MP4) and its duration: there is
//! no picture to make stills from.

mod audio_track;
mod poster;
mod probe;
mod transcode;

use crate::av::{self, Deadline};
use crate::preset::VideoPreset;
use crate::{Metadata, Presets, Processed, Step, Variant, WorkerError};
use ffmpeg::codec::Id;
use ffmpeg_next as ffmpeg;
use poster::Picker;
use probe::{Facts, VideoFacts};
use std::path::Path;
use std::time::Instant;

pub fn process(
    input_path: &Path,
    presets: &Presets,
    out_dir: &Path,
) -> Result<Processed, WorkerError> {
    let preset = &presets.video;
    let deadline = Deadline::after_seconds(preset.max_job_seconds);
    let mut steps = Vec::new();

    let start = Instant::now();
    let mut input = av::input::open(input_path, deadline)?;
    let facts = probe::inspect(&mut input, preset)?;
    steps.push(Step {
        name: "probe",
        took: start.elapsed(),
    });

    let display = facts.video.as_ref().map(VideoFacts::display_size);
    let target =
        display.map(|(w, h)| av::fit_box(w, h, preset.max_long_edge, preset.max_short_edge));
    let copy_video = facts
        .video
        .as_ref()
        .is_some_and(|v| can_copy_video(v, &facts, preset));
    let plan = transcode::Plan {
        encode_video_to: if copy_video { None } else { target },
        copy_audio: facts.audio.as_ref().is_some_and(|a| a.codec == Id::AAC),
    };

    let start = Instant::now();
    let video_path = out_dir.join("video.mp4");
    let written = transcode::run(&mut input, &facts, &plan, preset, &video_path, deadline)?;
    drop(input);
    steps.push(Step {
        name: if copy_video { "remux" } else { "transcode" },
        took: start.elapsed(),
    });
    let output_size = match (plan.encode_video_to, display) {
        (Some(size), _) => Some(size),
        (None, size) => size,
    };
    let mut variants = vec![Variant {
        name: "video".into(),
        size: std::fs::metadata(&video_path)?.len(),
        path: video_path,
        mime: "video/mp4".into(),
        width: output_size.map(|s| s.0),
        height: output_size.map(|s| s.1),
        duration_ms: Some(facts.duration_ms),
    }];

    let mut placeholder = None;
    if facts.video.is_some() {
        let start = Instant::now();
        let picker = if copy_video {
            poster_from_start(input_path, &facts, preset, deadline)?
        } else {
            written.poster
        };
        let image = picker
            .into_image(preset.poster.max_edge)?
            .ok_or_else(|| WorkerError::DecodeFailed("the video has no decodable frame".into()))?;
        variants.push(poster::write(&image, &preset.poster, out_dir)?);
        let (stills, hashes) = satchel_workers::image::still_variants(
            image,
            &presets.image,
            out_dir,
            &["thumbnail", "blurred"],
        )?;
        variants.extend(stills);
        placeholder = Some(hashes);
        steps.push(Step {
            name: "poster",
            took: start.elapsed(),
        });
    }

    Ok(Processed {
        metadata: Metadata {
            width: display.map(|d| d.0),
            height: display.map(|d| d.1),
            duration_ms: Some(facts.duration_ms),
            waveform: None,
        },
        placeholder,
        variants,
        steps,
    })
}

/// Copying keeps the sender's quality and costs almost nothing, but only an upright H.264
/// 4:2:0 stream already inside the box, at a bitrate a phone on mobile data can stream, with
/// AAC or no audio. Rotated video is re-encoded upright rather than trusting every player to
/// honour the display matrix.
fn can_copy_video(video: &VideoFacts, facts: &Facts, preset: &VideoPreset) -> bool {
    let (w, h) = video.display_size();
    video.codec == Id::H264
        && video.is_yuv420p
        && video.rotation == 0
        && av::fit_box(w, h, preset.max_long_edge, preset.max_short_edge) == (w, h)
        && facts.bit_rate > 0
        && facts.bit_rate <= preset.remux_max_bitrate
        && facts.audio.as_ref().is_none_or(|a| a.codec == Id::AAC)
}

/// When the video was copied nothing was decoded: decode from the start until a poster shows.
fn poster_from_start(
    path: &Path,
    facts: &Facts,
    preset: &VideoPreset,
    deadline: Deadline,
) -> Result<Picker, WorkerError> {
    let mut picker = Picker::new(facts.duration_ms);
    let Some(video) = &facts.video else {
        return Ok(picker);
    };
    let mut input = av::input::open(path, deadline)?;
    let stream = input
        .context()
        .stream(video.index)
        .ok_or_else(|| WorkerError::DecodeFailed("stream vanished".into()))?;
    let time_base = f64::from(stream.time_base());
    let start = stream.start_time().max(0);
    let mut decoder = open_video_decoder(&stream, preset)?;
    let mut packet = ffmpeg::Packet::empty();
    let mut frame = ffmpeg::frame::Video::empty();
    let mut more = true;
    while more && !picker.done() {
        deadline.check()?;
        more = input.read(&mut packet)?;
        if more {
            if packet.stream() != video.index {
                continue;
            }
            decoder
                .send_packet(&packet)
                .map_err(av::decode_err("decoding the video"))?;
        } else {
            decoder
                .send_eof()
                .map_err(av::decode_err("decoding the video"))?;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            let at = frame.timestamp().unwrap_or(0).saturating_sub(start) as f64 * time_base;
            picker.offer(&frame, at);
        }
    }
    Ok(picker)
}

/// A video decoder bounded by the preset: FFmpeg itself refuses frames over `max_pixels`.
fn open_video_decoder(
    stream: &ffmpeg::format::stream::Stream,
    preset: &VideoPreset,
) -> Result<ffmpeg::decoder::Video, WorkerError> {
    let mut context = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(av::decode_err("opening the video decoder"))?;
    context.set_threading(ffmpeg::threading::Config {
        kind: ffmpeg::threading::Type::Frame,
        count: preset.threads as usize,
        ..Default::default()
    });
    // SAFETY: a plain field, set before the decoder is opened.
    unsafe {
        (*context.as_mut_ptr()).max_pixels = i64::try_from(preset.max_pixels).unwrap_or(i64::MAX)
    };
    context
        .decoder()
        .video()
        .map_err(av::decode_err("opening the video decoder"))
}
