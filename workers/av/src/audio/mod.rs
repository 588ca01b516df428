//! The audio pipeline: any accepted audio file in, one `voice` variant out (mono Opus in Ogg,
//! loudness-normalised) plus the exact duration and a waveform.

mod decode;
mod loudness;
mod opus;
mod resample;
mod waveform;

use crate::av::Deadline;
use crate::preset::AudioPreset;
use crate::{Metadata, Processed, Step, Variant, WorkerError};
use ffmpeg_next::codec::Id;
use std::path::Path;
use std::time::Instant;

/// Audio codecs FFmpeg may decode for us (Symphonia's own set is fixed at build time).
pub(crate) const ACCEPTED_CODECS: &[Id] = &[
    Id::AAC,
    Id::MP3,
    Id::OPUS,
    Id::VORBIS,
    Id::FLAC,
    Id::ALAC,
    Id::PCM_S16LE,
    Id::PCM_S16BE,
    Id::PCM_S24LE,
    Id::PCM_S32LE,
    Id::PCM_F32LE,
    Id::PCM_U8,
    Id::PCM_ALAW,
    Id::PCM_MULAW,
];

pub fn process(
    input: &Path,
    preset: &AudioPreset,
    out_dir: &Path,
) -> Result<Processed, WorkerError> {
    let deadline = Deadline::after_seconds(preset.max_job_seconds);
    let mut steps = Vec::new();
    let mut timed = |name: &'static str, start: Instant| {
        steps.push(Step {
            name,
            took: start.elapsed(),
        })
    };

    let start = Instant::now();
    let pcm = decode::decode(input, preset.max_duration_s, deadline)?;
    if pcm.samples.is_empty() {
        return Err(WorkerError::Empty("the audio has no samples".into()));
    }
    let duration_ms = pcm.duration_ms();
    timed("decode", start);

    // Measured at the source rate (BS.1770 is rate-independent), before resampling; the gain
    // is applied as the encoder copies each frame, which saves a pass over the samples.
    let start = Instant::now();
    let measured = loudness::measure(&pcm.samples, pcm.rate);
    let gain = loudness::gain_db(
        &measured,
        preset.loudness_target_lufs,
        preset.max_gain_db,
        preset.peak_ceiling_dbfs,
    );
    // Scale-free (the loudest slice is 255), so the gain does not change it.
    let waveform = waveform::peaks(
        &pcm.samples,
        usize::from(preset.waveform_points.clamp(64, 100)),
    );
    timed("loudness", start);

    let start = Instant::now();
    let samples = resample::to_opus_rate(pcm.samples, pcm.rate)?;
    timed("resample", start);

    let start = Instant::now();
    let path = out_dir.join("voice.ogg");
    opus::encode(&samples, 10f32.powf(gain / 20.0), preset, &path, deadline)?;
    timed("encode", start);

    let voice = Variant {
        name: "voice".into(),
        size: std::fs::metadata(&path)?.len(),
        path,
        mime: "audio/ogg".into(),
        width: None,
        height: None,
        duration_ms: Some(duration_ms),
    };
    Ok(Processed {
        metadata: Metadata {
            duration_ms: Some(duration_ms),
            waveform: Some(waveform),
            ..Metadata::default()
        },
        placeholder: None,
        variants: vec![voice],
        steps,
    })
}
