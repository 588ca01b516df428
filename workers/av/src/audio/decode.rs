//! Decoding any accepted audio input to one mono channel of `f32` samples.
//!
//! Symphonia (pure Rust) takes MP3, AAC/M4A, FLAC, WAV and Ogg Vorbis; it only ever reads the
//! file it is given. What it cannot decode (Opus, audio inside WebM, ...) goes through FFmpeg,
//! opened with [`crate::av::input`]'s hardening.

use crate::av::{self, Deadline};
use crate::WorkerError;
use ffmpeg_next as ffmpeg;
use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Mono samples at the source's rate.
pub struct Pcm {
    pub samples: Vec<f32>,
    pub rate: u32,
}

impl Pcm {
    pub fn duration_ms(&self) -> u64 {
        (self.samples.len() as u64 * 1000 + u64::from(self.rate) / 2) / u64::from(self.rate)
    }
}

/// A corrupt packet here and there is tolerated (phones write them); more than this many in a
/// row means the stream is not audio we can trust.
const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 32;

pub fn decode(path: &Path, max_seconds: u32, deadline: Deadline) -> Result<Pcm, WorkerError> {
    // Symphonia is memory-safe but may still panic on a hostile stream; that must fail the job,
    // not the thread it runs on.
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        with_symphonia(path, max_seconds, deadline)
    }))
    .unwrap_or_else(|_| {
        Err(WorkerError::DecodeFailed(
            "the audio decoder gave up (panic)".into(),
        ))
    });
    match attempt {
        Ok(Some(pcm)) => Ok(pcm),
        Ok(None) => with_ffmpeg(path, max_seconds, deadline),
        Err(e) => Err(e),
    }
}

/// `Ok(None)`: Symphonia does not know the container or the codec; FFmpeg should try.
fn with_symphonia(
    path: &Path,
    max_seconds: u32,
    deadline: Deadline,
) -> Result<Option<Pcm>, WorkerError> {
    let stream = MediaSourceStream::new(Box::new(File::open(path)?), Default::default());
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let Ok(probed) = symphonia::default::get_probe().format(
        &Hint::new(),
        stream,
        &format_options,
        &MetadataOptions::default(),
    ) else {
        return Ok(None);
    };
    let mut format = probed.format;
    let Some(track) = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
    else {
        return Ok(None);
    };
    let track_id = track.id;
    let params = track.codec_params.clone();
    // Symphonia's MP4 reader ignores edit lists, so AAC would keep its encoder priming and
    // padding (tens of ms of silence, a wrong duration); FFmpeg applies them.
    if params.codec == symphonia::core::codecs::CODEC_TYPE_AAC {
        return Ok(None);
    }
    let Ok(mut decoder) =
        symphonia::default::get_codecs().make(&params, &DecoderOptions::default())
    else {
        return Ok(None);
    };
    let rate = params.sample_rate.filter(|r| *r > 0).ok_or_else(no_rate)?;
    let max_samples = u64::from(max_seconds) * u64::from(rate);
    if let Some(frames) = params.n_frames {
        if frames > max_samples {
            return Err(too_long(frames / u64::from(rate), max_seconds));
        }
    }

    let mut samples =
        Vec::with_capacity(params.n_frames.map_or(0, |n| n.min(max_samples) as usize));
    let mut interleaved: Option<SampleBuffer<f32>> = None;
    let mut bad_in_a_row = 0;
    loop {
        deadline.check()?;
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(WorkerError::DecodeFailed(format!("reading the audio: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            Err(SymError::DecodeError(e)) => {
                bad_in_a_row += 1;
                if bad_in_a_row > MAX_CONSECUTIVE_BAD_PACKETS {
                    return Err(WorkerError::DecodeFailed(format!(
                        "decoding the audio: {e}"
                    )));
                }
                continue;
            }
            Err(e) => {
                return Err(WorkerError::DecodeFailed(format!(
                    "decoding the audio: {e}"
                )))
            }
        };
        bad_in_a_row = 0;
        let spec = *decoded.spec();
        if spec.rate != rate {
            return Err(WorkerError::UnsupportedCodec(
                "the sample rate changes mid-stream".into(),
            ));
        }
        let channels = spec.channels.count().max(1);
        let frames = decoded.frames();
        let buffer = match &mut interleaved {
            Some(b) if b.capacity() >= frames * channels => b,
            slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buffer.copy_interleaved_ref(decoded);
        downmix_into(&mut samples, buffer.samples(), channels);
        if samples.len() as u64 > max_samples {
            return Err(too_long(
                samples.len() as u64 / u64::from(rate),
                max_seconds,
            ));
        }
    }
    Ok(Some(Pcm { samples, rate }))
}

fn with_ffmpeg(path: &Path, max_seconds: u32, deadline: Deadline) -> Result<Pcm, WorkerError> {
    use ffmpeg::format::{sample::Type as SampleType, Sample};
    use ffmpeg::{media, ChannelLayout};

    let mut input = av::input::open(path, deadline)?;
    let stream = input
        .context()
        .streams()
        .best(media::Type::Audio)
        .ok_or_else(|| WorkerError::DecodeFailed("no audio stream".into()))?;
    let index = stream.index();
    let codec = stream.parameters().id();
    let declared = stream.duration().max(0) as f64 * f64::from(stream.time_base());
    if !super::ACCEPTED_CODECS.contains(&codec) {
        return Err(WorkerError::UnsupportedCodec(format!(
            "audio codec {codec:?} is not accepted"
        )));
    }
    let mut decoder = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().audio())
        .map_err(av::decode_err("opening the audio decoder"))?;
    let rate = decoder.rate();
    if rate == 0 {
        return Err(no_rate());
    }
    let max_samples = u64::from(max_seconds) * u64::from(rate);

    // Downmix and convert to packed f32, keeping the source rate; resampling happens once,
    // later, for both decoders alike.
    let mut resampler: Option<ffmpeg::software::resampling::Context> = None;
    let mut samples = Vec::new();
    let mut frame = ffmpeg::frame::Audio::empty();
    let mut packet = ffmpeg::Packet::empty();
    let mut at_end = false;
    while !at_end {
        deadline.check()?;
        if input.read(&mut packet)? {
            if packet.stream() != index {
                continue;
            }
            decoder
                .send_packet(&packet)
                .map_err(av::decode_err("decoding the audio"))?;
        } else {
            decoder
                .send_eof()
                .map_err(av::decode_err("decoding the audio"))?;
            at_end = true;
        }
        while decoder.receive_frame(&mut frame).is_ok() {
            if frame.rate() != rate {
                return Err(WorkerError::UnsupportedCodec(
                    "the sample rate changes mid-stream".into(),
                ));
            }
            if frame.channel_layout().is_empty() {
                frame.set_channel_layout(ChannelLayout::default(i32::from(frame.channels())));
            }
            let swr = match &mut resampler {
                Some(swr) => swr,
                slot => slot.insert(
                    ffmpeg::software::resampling::Context::get(
                        frame.format(),
                        frame.channel_layout(),
                        rate,
                        Sample::F32(SampleType::Packed),
                        ChannelLayout::MONO,
                        rate,
                    )
                    .map_err(av::decode_err("converting the audio"))?,
                ),
            };
            // A fresh frame each time: `run` sizes an empty frame to fit the input.
            let mut mono = ffmpeg::frame::Audio::empty();
            swr.run(&frame, &mut mono)
                .map_err(av::decode_err("converting the audio"))?;
            samples.extend_from_slice(&mono.plane::<f32>(0)[..mono.samples()]);
            if samples.len() as u64 > max_samples {
                return Err(too_long(
                    samples.len() as u64 / u64::from(rate),
                    max_seconds,
                ));
            }
        }
    }
    // FFmpeg 5.1 honours an MP4 edit list's start (encoder priming) but still decodes the
    // padding of the last AAC frame; the container's duration says where the audio ends.
    let declared_samples = (declared * f64::from(rate)).round() as usize;
    if declared_samples > 0
        && samples.len() > declared_samples
        && samples.len() - declared_samples <= 4096
    {
        samples.truncate(declared_samples);
    }
    Ok(Pcm { samples, rate })
}

/// Averages the channels of interleaved samples, so a stereo recording is not louder than its
/// mono original.
fn downmix_into(out: &mut Vec<f32>, interleaved: &[f32], channels: usize) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

fn too_long(seconds: u64, max_seconds: u32) -> WorkerError {
    WorkerError::TooLong(format!(
        "the audio lasts over {seconds} s; at most {max_seconds} s are accepted"
    ))
}

fn no_rate() -> WorkerError {
    WorkerError::DecodeFailed("the audio has no sample rate".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        let mut out = Vec::new();
        downmix_into(&mut out, &[1.0, 0.0, 0.5, 0.5], 2);
        assert_eq!(out, vec![0.5, 0.5]);
    }
}
