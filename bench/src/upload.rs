//! Workload 4: upload throughput through satchel against a direct S3 PUT of the same bytes,
//! with 1 and 16 concurrent streams.

use super::client::Api;
use super::progress;
use super::report::{Better, Figures, Role, Row, Status, Workload, MIB};
use super::s3_direct::DirectS3;
use super::stats;
use super::{inputs, Ctx};
use bytes::Bytes;
use futures_util::future::join_all;
use std::future::Future;
use std::time::Instant;

pub const STREAMS: [usize; 2] = [1, 16];

pub async fn run(ctx: &Ctx) -> anyhow::Result<Workload> {
    let plan = &ctx.plan;
    let mut work = Workload::new("upload", "Upload throughput");
    let input = inputs::blob(&ctx.cache, plan.upload_bytes, ctx.seed)?;
    work.inputs.push(format!(
        "{} ({:.0} MiB of random bytes: kind `file`, stored and never processed)",
        input.display(),
        plan.upload_bytes as f64 / MIB
    ));
    let body = Bytes::from(tokio::fs::read(&input).await?);
    let rounds = |streams: usize| match streams {
        1 => plan.upload_single_runs,
        _ => plan.upload_parallel_rounds,
    };

    for streams in STREAMS {
        // A chat per row, erased after it, so a full run never holds every upload at once.
        let chat = ctx.api.new_chat("bench").await?;
        let pb = progress::bar(
            rounds(streams) as u64,
            format!("satchel upload, {streams} stream(s)"),
        );
        let api: &Api = &ctx.api;
        let row = measure(
            &format!("satchel, {streams} stream(s)"),
            Role::Satchel,
            &body,
            streams,
            rounds(streams),
            &pb,
            |b| {
                let chat = chat.clone();
                async move { api.upload(&chat, "bench", "blob.bin", b).await.map(|_| ()) }
            },
        )
        .await;
        progress::finish(&pb, format!("satchel upload, {streams} stream(s)"));
        work.rows.push(row);
        ctx.api.delete_chat(&chat).await;
    }

    match &ctx.s3 {
        Err(reason) => {
            for streams in STREAMS {
                work.rows.push(Row::unmeasured(
                    format!("direct S3 PUT, {streams} stream(s)"),
                    Role::Peer,
                    Status::NotApplicable,
                    reason.clone(),
                ));
            }
        }
        Ok(settings) => {
            let direct = DirectS3::connect(settings).await;
            let mut keys = Vec::new();
            for streams in STREAMS {
                let subject = format!("direct S3 PUT, {streams} stream(s)");
                let Ok(direct) = &direct else {
                    let e = direct
                        .as_ref()
                        .err()
                        .map(|e| format!("{e:#}"))
                        .unwrap_or_default();
                    work.rows
                        .push(Row::unmeasured(subject, Role::Peer, Status::Failed, e));
                    continue;
                };
                let pb = progress::bar(rounds(streams) as u64, subject.clone());
                let counter = std::sync::atomic::AtomicUsize::new(0);
                let row = measure(
                    &subject,
                    Role::Peer,
                    &body,
                    streams,
                    rounds(streams),
                    &pb,
                    |b| {
                        let key = format!(
                            "put-{}",
                            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        );
                        async move { direct.put(&key, b).await }
                    },
                )
                .await;
                keys.extend((0..counter.into_inner()).map(|i| format!("put-{i}")));
                progress::finish(&pb, subject);
                work.rows.push(row);
            }
            if let Ok(direct) = &direct {
                direct.clean_up(&keys).await;
            }
        }
    }

    if ctx.target.embedded.is_some() && ctx.s3.is_err() {
        let pb = progress::bar(
            plan.upload_single_runs as u64,
            "local disk write (reference)",
        );
        let dir = tempfile::Builder::new()
            .prefix("satchel-bench-disk-")
            .tempdir()?;
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let row = measure(
            "local disk write + fsync, 1 stream (reference)",
            Role::Reference,
            &body,
            1,
            plan.upload_single_runs,
            &pb,
            |b| {
                let path = dir.path().join(
                    counter
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                        .to_string(),
                );
                // std's blocking writes on a thread of their own: tokio's File would add a
                // round trip to the blocking pool per 2 MiB and understate the disk.
                async move {
                    tokio::task::spawn_blocking(move || {
                        let mut f = std::fs::File::create(&path)?;
                        std::io::Write::write_all(&mut f, &b)?;
                        f.sync_data()
                    })
                    .await??;
                    Ok(())
                }
            },
        )
        .await;
        progress::finish(&pb, "local disk write (reference)");
        work.rows.push(row);
    }

    for streams in STREAMS {
        work.compare(
            "throughput_mib_s",
            &format!("satchel, {streams} stream(s)"),
            &format!("direct S3 PUT, {streams} stream(s)"),
            Better::Higher,
        );
    }
    work.method = format!(
        "The same bytes uploaded from the bench's memory: {} sequential upload(s) on one stream, \
         and {} round(s) of 16 uploads started together. Throughput is bytes sent ÷ wall time \
         of the round (to the last `201`); latency is per request. The S3 peer uses satchel's \
         part size and parts in flight. The local disk write (embedded filesystem store only) \
         gives the disk's scale: it writes the whole file, then fsyncs, where satchel writes \
         as bytes arrive, so the kernel is already writing back before satchel's fsync and \
         satchel can come out ahead of it.",
        plan.upload_single_runs, plan.upload_parallel_rounds
    );
    Ok(work)
}

/// `rounds` rounds of `streams` concurrent calls of `send`, each with the whole body.
async fn measure<F, Fut>(
    subject: &str,
    role: Role,
    body: &Bytes,
    streams: usize,
    rounds: usize,
    pb: &indicatif::ProgressBar,
    send: F,
) -> Row
where
    F: Fn(Bytes) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut latencies = Vec::new();
    let (mut bytes, mut seconds) = (0f64, 0f64);
    for _ in 0..rounds {
        let started = Instant::now();
        let results = join_all((0..streams).map(|_| {
            let fut = send(body.clone());
            async move {
                let t = Instant::now();
                fut.await.map(|_| t.elapsed().as_secs_f64())
            }
        }))
        .await;
        seconds += started.elapsed().as_secs_f64();
        for r in results {
            match r {
                Ok(s) => latencies.push(s * 1e3),
                Err(e) => {
                    return Row::unmeasured(subject, role, Status::Failed, format!("{e:#}"));
                }
            }
        }
        bytes += (body.len() * streams) as f64;
        pb.inc(1);
    }
    let mut f = Figures::default();
    f.set("throughput_mib_s", bytes / MIB / seconds)
        .set("uploads", latencies.len() as f64);
    if let Some(s) = stats::summarize(&latencies) {
        f.set("latency_p50_ms", s.p50).set("latency_max_ms", s.max);
    }
    Row::measured(subject, role, f)
}
