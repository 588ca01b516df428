//! Workload 6: download-link issuance, requests/s and latency, read against the same
//! server's `/healthz` at the same concurrency (the floor of any request to it).

use super::client::Api;
use super::report::{Better, Figures, Role, Row, Status, Workload};
use super::{progress, stats, Ctx};
use bytes::Bytes;
use std::future::Future;
use std::time::{Duration, Instant};

const LINKS: &str = "satchel POST /v1/media/{id}/links";
const FLOOR: &str = "GET /healthz on the same server (floor)";

pub async fn run(ctx: &Ctx) -> anyhow::Result<Workload> {
    let plan = &ctx.plan;
    let mut work = Workload::new("links", "Download-link issuance");
    let chat = ctx.api.new_chat("bench").await?;
    let id = ctx
        .api
        .upload(
            &chat,
            "bench",
            "note.bin",
            Bytes::from_static(b"\x00\x01 bench"),
        )
        .await?;
    let seconds = Duration::from_secs_f64(plan.links_seconds);
    let c = plan.links_concurrency;

    let api: &Api = &ctx.api;
    let (links, ms) = hammer(LINKS, Role::Satchel, seconds, c, || {
        api.issue_link(&id, "bench")
    })
    .await;
    work.rows.push(links);
    work.samples_ms.insert("link_issuance".into(), ms);
    let (floor, ms) = hammer(FLOOR, Role::Reference, seconds, c, || api.healthz()).await;
    work.rows.push(floor);
    work.samples_ms.insert("healthz".into(), ms);
    ctx.api.delete_chat(&chat).await;

    work.compare("requests_per_s", LINKS, FLOOR, Better::Higher);
    work.compare("latency_p50_ms", LINKS, FLOOR, Better::Lower);
    work.method = format!(
        "{c} concurrent clients for {:.0} s each, one request after another on kept-alive \
         connections. A link checks the token, that the media exists and the user is a member \
         (catalog reads), and signs; /healthz is the server's floor for any request.",
        plan.links_seconds
    );
    Ok(work)
}

async fn hammer<F, Fut>(
    subject: &str,
    role: Role,
    length: Duration,
    concurrency: usize,
    call: F,
) -> (Row, Vec<f64>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let pb = progress::spinner(format!("{subject}: {concurrency} clients"));
    let started = Instant::now();
    let deadline = started + length;
    let call = &call;
    let clients = (0..concurrency).map(|_| async move {
        let (mut ms, mut errors, mut first_error) = (Vec::new(), 0usize, None);
        while Instant::now() < deadline {
            let t = Instant::now();
            match call().await {
                Ok(()) => ms.push(t.elapsed().as_secs_f64() * 1e3),
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(format!("{e:#}"));
                }
            }
        }
        (ms, errors, first_error)
    });
    let results = futures_util::future::join_all(clients).await;
    let wall = started.elapsed().as_secs_f64();
    progress::finish(&pb, subject.to_owned());
    let mut ms = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for (m, e, f) in results {
        ms.extend(m);
        errors += e;
        first_error = first_error.or(f);
    }
    let Some(s) = stats::summarize(&ms) else {
        let note = first_error.unwrap_or_else(|| "no request completed".into());
        return (Row::unmeasured(subject, role, Status::Failed, note), ms);
    };
    let mut f = Figures::default();
    f.set("requests", ms.len() as f64)
        .set("errors", errors as f64)
        .set("requests_per_s", ms.len() as f64 / wall)
        .set("latency_p50_ms", s.p50)
        .set("latency_p95_ms", s.p95)
        .set("latency_p99_ms", s.p99);
    let mut row = Row::measured(subject, role, f);
    row.note = first_error.map(|e| format!("first error: {e}"));
    (row, ms)
}
