//! Workload 3: a video to 720p against the ffmpeg CLI with the preset's codec settings.

use super::progress;
use super::report::{Better, Workload};
use super::transform::{add_api_row, compare_all, scratch, time_jobs, Job};
use super::{inputs, Ctx};

const SATCHEL: &str = "satchel process (video + poster + thumbnail + blurred)";
const STEP: &str = "satchel: transcode step only";
const FFMPEG: &str = "ffmpeg -c:v libx264 (same settings)";

pub async fn run(ctx: &Ctx) -> anyhow::Result<Workload> {
    let (w, h, seconds) = ctx.plan.video;
    let mut work = Workload::new("video", "Video to 720p");
    let pb = progress::spinner(format!("generating a {w}x{h} {seconds} s clip (cached)"));
    let input = inputs::video(&ctx.cache, ctx.plan.video, &ctx.peers.ffmpeg)?;
    progress::finish(&pb, format!("input {}", input.display()));
    work.inputs.push(format!(
        "{} ({w}x{h}, {seconds} s, 30 fps, H.264 CRF 20 + AAC, {:.1} MB; ffmpeg testsrc2)",
        input.display(),
        std::fs::metadata(&input)?.len() as f64 / 1e6
    ));

    let p = &ctx.presets.video;
    let (tw, th) = fit_box(w, h, p.max_long_edge, p.max_short_edge);
    let dir = scratch(&ctx.work, "video")?;
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        &input.display().to_string(),
        "-map",
        "0:v:0",
        "-map",
        "0:a:0?",
        "-vf",
        &format!("scale={tw}:{th}:flags=bicubic,setsar=1,format=yuv420p"),
        "-c:v",
        "libx264",
        "-preset",
        &p.x264_preset,
        "-crf",
        &p.crf.to_string(),
        "-c:a",
        "copy",
        "-movflags",
        "+faststart",
    ]
    .map(String::from)
    .to_vec();
    if p.threads > 0 {
        args.extend(["-threads".into(), p.threads.to_string()]);
    }
    args.push(dir.join("ffmpeg-video.mp4").display().to_string());
    let jobs = vec![
        Job::satchel(
            SATCHEL,
            &ctx.exe,
            &input,
            &scratch(&dir, "satchel")?,
            ctx.preset_path.as_deref(),
        ),
        Job::peer(FFMPEG, &ctx.peers.ffmpeg, vec![args]),
    ];
    let pb = progress::bar(0, "video to 720p");
    let timed = time_jobs(jobs, ctx.plan.transform_runs, &pb).await;
    progress::finish(&pb, "video to 720p: satchel and ffmpeg timed");
    work.rows.extend(timed.iter().map(|t| t.row()));
    match timed[0].step_row("transcode", STEP) {
        Some(row) => work.rows.push(row),
        None if timed[0].step_row("remux", STEP).is_some() => work.notes.push(
            "satchel copied this video's stream (already within the box at a modest bitrate), \
             so it has no transcode step to compare."
                .into(),
        ),
        None => {}
    }

    add_api_row(ctx, &mut work, &input, "clip.mp4", "video").await;

    compare_all(&mut work, SATCHEL, &[FFMPEG]);
    if work.rows.iter().any(|r| r.subject == STEP) {
        work.compare("wall_median_s", STEP, FFMPEG, Better::Lower);
    }
    work.method = format!(
        "Child processes timed from spawn to exit, {} run(s) each, interleaved. Both scale to \
         {tw}x{th} (bicubic), encode libx264 preset {} CRF {} and copy the AAC track, \
         moov first. satchel's job also makes a poster, thumbnail, blurred image and \
         placeholders; its transcode step alone (from its own step timings) is compared too.",
        ctx.plan.transform_runs, p.x264_preset, p.crf
    );
    Ok(work)
}

/// The same box as satchel's video pipeline: even sizes, same shape, never upscaled.
fn fit_box(w: u32, h: u32, long: u32, short: u32) -> (u32, u32) {
    let (bw, bh) = if w >= h { (long, short) } else { (short, long) };
    let scale = (f64::from(bw) / f64::from(w))
        .min(f64::from(bh) / f64::from(h))
        .min(1.0);
    let even = |x: f64| ((x.round() as u32) & !1).max(2);
    (even(f64::from(w) * scale), even(f64::from(h) * scale))
}
