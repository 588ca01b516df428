//! Workload 2: a voice note against `ffmpeg -c:a libopus` at the preset's bitrate.

use super::progress;
use super::report::Workload;
use super::transform::{add_api_row, compare_all, scratch, time_jobs, Job};
use super::{inputs, Ctx};

const SATCHEL: &str = "satchel process (voice: loudness, waveform, Opus)";
const FFMPEG: &str = "ffmpeg -c:a libopus";

pub async fn run(ctx: &Ctx) -> anyhow::Result<Workload> {
    let seconds = ctx.plan.voice_seconds;
    let mut work = Workload::new("voice", "Voice note to Opus");
    let input = inputs::voice_wav(&ctx.cache, seconds, ctx.seed)?;
    work.inputs.push(format!(
        "{} ({seconds} s of speech-like mono audio, 48 kHz 16-bit WAV, seed {})",
        input.display(),
        ctx.seed
    ));
    let p = &ctx.presets.audio;
    let dir = scratch(&ctx.work, "voice")?;
    let jobs = vec![
        Job::satchel(
            SATCHEL,
            &ctx.exe,
            &input,
            &scratch(&dir, "satchel")?,
            ctx.preset_path.as_deref(),
        ),
        Job::peer(
            FFMPEG,
            &ctx.peers.ffmpeg,
            vec![[
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                &input.display().to_string(),
                "-ac",
                "1",
                "-ar",
                "48000",
                "-c:a",
                "libopus",
                "-b:a",
                &p.bitrate.to_string(),
                "-application",
                "voip",
                "-compression_level",
                &p.complexity.min(10).to_string(),
                &dir.join("ffmpeg-voice.ogg").display().to_string(),
            ]
            .map(String::from)
            .to_vec()],
        ),
    ];
    let pb = progress::bar(0, "voice note");
    let timed = time_jobs(jobs, ctx.plan.transform_runs, &pb).await;
    progress::finish(&pb, "voice note: satchel and ffmpeg timed");
    work.rows.extend(timed.iter().map(|t| t.row()));
    if let Some(row) = timed[0].step_row("encode", "satchel: Opus encode step") {
        work.rows.push(row);
    }

    add_api_row(ctx, &mut work, &input, "voice.wav", "voice note").await;

    compare_all(&mut work, SATCHEL, &[FFMPEG]);
    work.method = format!(
        "Child processes timed from spawn to exit, {} run(s) each, interleaved. Both encode \
         mono Opus in Ogg at {} b/s, VoIP mode, complexity {}. satchel also measures EBU R128 \
         loudness, applies the gain and computes the waveform; ffmpeg only transcodes.",
        ctx.plan.transform_runs,
        p.bitrate,
        p.complexity.min(10)
    );
    Ok(work)
}
