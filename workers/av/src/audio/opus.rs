//! Encoding mono 48 kHz samples as Opus in Ogg with libopus, tuned for speech.

use super::resample::OPUS_RATE;
use crate::av::{self, Deadline};
use crate::preset::AudioPreset;
use crate::WorkerError;
use ffmpeg::format::{sample::Type as SampleType, Sample};
use ffmpeg::{codec, ChannelLayout, Dictionary, Rational};
use ffmpeg_next as ffmpeg;
use std::path::Path;

/// Encodes `samples`, each multiplied by `gain` on the way in.
pub fn encode(
    samples: &[f32],
    gain: f32,
    preset: &AudioPreset,
    out: &Path,
    deadline: Deadline,
) -> Result<(), WorkerError> {
    av::init();
    let err = av::encode_err("encoding Opus");
    let libopus = ffmpeg::encoder::find_by_name("libopus")
        .ok_or_else(|| WorkerError::EncodeFailed("this FFmpeg has no libopus".into()))?;
    let mut muxer = ffmpeg::format::output_as(out, "ogg").map_err(&err)?;
    let global_header = muxer
        .format()
        .flags()
        .contains(ffmpeg::format::Flags::GLOBAL_HEADER);

    let mut encoder = codec::context::Context::new_with_codec(libopus)
        .encoder()
        .audio()
        .map_err(&err)?;
    let time_base = Rational(1, OPUS_RATE as i32);
    encoder.set_rate(OPUS_RATE as i32);
    encoder.set_channel_layout(ChannelLayout::MONO);
    encoder.set_channels(1);
    encoder.set_format(Sample::F32(SampleType::Packed));
    encoder.set_bit_rate(preset.bitrate as usize);
    encoder.set_time_base(time_base);
    if global_header {
        encoder.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut options = Dictionary::new();
    options.set("application", "voip");
    options.set("compression_level", &preset.complexity.min(10).to_string());
    let mut encoder = encoder.open_as_with(libopus, options).map_err(&err)?;

    let mut stream = muxer.add_stream(libopus).map_err(&err)?;
    stream.set_parameters(&encoder);
    stream.set_time_base(time_base);
    muxer.write_header().map_err(&err)?;
    let stream_time_base = muxer.stream(0).map(|s| s.time_base()).unwrap_or(time_base);

    let frame_size = (encoder.frame_size() as usize).max(1);
    let mut packet = ffmpeg::Packet::empty();
    let mut drain = |encoder: &mut ffmpeg::encoder::Audio,
                     muxer: &mut ffmpeg::format::context::Output| {
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(time_base, stream_time_base);
            packet.write_interleaved(muxer).map_err(&err)?;
        }
        Ok::<(), WorkerError>(())
    };
    for (i, chunk) in samples.chunks(frame_size).enumerate() {
        if i % 256 == 0 {
            deadline.check()?;
        }
        let mut frame = ffmpeg::frame::Audio::new(
            Sample::F32(SampleType::Packed),
            chunk.len(),
            ChannelLayout::MONO,
        );
        frame.set_rate(OPUS_RATE);
        let plane = &mut frame.plane_mut::<f32>(0)[..chunk.len()];
        plane
            .iter_mut()
            .zip(chunk)
            .for_each(|(out, s)| *out = s * gain);
        frame.set_pts(Some((i * frame_size) as i64));
        encoder
            .send_frame(&frame)
            .map_err(av::encode_err("encoding Opus"))?;
        drain(&mut encoder, &mut muxer)?;
    }
    encoder
        .send_eof()
        .map_err(av::encode_err("encoding Opus"))?;
    drain(&mut encoder, &mut muxer)?;
    muxer
        .write_trailer()
        .map_err(av::encode_err("writing Ogg"))?;
    Ok(())
}
