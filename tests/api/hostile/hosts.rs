//! Issue 15: a worker keeps long-lived transform hosts, of two kinds (stills in `satchel`
//! itself, the rest in `satchel-transform`), and each job runs in a process forked from one.
//! The attacks: a job that dies, runs over its budget or is killed must end only itself (the
//! host serves on, or is replaced); a host that died while idle, or that takes a job and never
//! answers, must not keep its job; a killed host or worker leaves no process running; and the
//! host must really be kept (a worker that started a process per job again would pay ~64 ms of
//! start-up per job).

use super::decoders::{long_wav, presets_with_budget};
use crate::helpers::*;
use crate::processes::{alive, program_of, start_node, transform_children, transform_hosts};
use std::time::{Duration, Instant};

fn me() -> u32 {
    std::process::id()
}

/// The test's hosts of `satchel` itself (stills) and of `satchel-transform`, once there are
/// `n` of each.
async fn hosts_of_each(n: usize) -> (Vec<u32>, Vec<u32>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (stills, av): (Vec<u32>, Vec<u32>) = transform_hosts(me())
            .into_iter()
            .partition(|&h| program_of(h).ends_with("/satchel"));
        if stills.len() == n && av.len() == n {
            return (stills, av);
        }
        assert!(Instant::now() < deadline, "hosts: {stills:?} {av:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(pid: u32, signal: i32) {
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// Uploads the photo fixture and waits until it is ready.
async fn photo_ready(app: &TestApp) {
    let media = app
        .upload_ok("c1", "u1", "photo.jpg", fixture("photo.jpg"))
        .await;
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
}

/// Waits until a job's process runs under a host of worker `pid`: the host and the job.
async fn running_job(pid: u32) -> (u32, u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for host in transform_hosts(pid) {
            if let Some(&job) = crate::processes::transform_children(pid)
                .iter()
                .find(|&&job| parent_of(job) == Some(host))
            {
                return (host, job);
            }
        }
        assert!(Instant::now() < deadline, "no job started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

async fn gone_within(pids: &[u32], within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while pids.iter().any(|&pid| alive(pid)) {
        assert!(Instant::now() < deadline, "{what} still running: {pids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn jobs_one_after_another_share_one_long_lived_host() {
    let app = spawn_app_with(&[("SATCHEL_WORKERS", "1")]).await;
    photo_ready(&app).await;
    let hosts = transform_hosts(me());
    assert_eq!(
        hosts.len(),
        2,
        "one worker, one host of each kind: {hosts:?}"
    );
    for _ in 0..4 {
        photo_ready(&app).await;
        assert_eq!(transform_hosts(me()), hosts, "the host was not kept");
    }
    // Each job's process ended with its job.
    assert_eq!(transform_children(me()), Vec::<u32>::new());
}

#[tokio::test]
async fn a_job_killed_at_its_budget_leaves_its_host_serving_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let presets = presets_with_budget(dir.path(), "[audio]", 1);
    let app = spawn_app_with(&[
        ("SATCHEL_WORKERS", "1"),
        ("SATCHEL_JOB_TIMEOUT_SECONDS", "1"),
        ("SATCHEL_PRESETS", &presets),
    ])
    .await;
    photo_ready(&app).await;
    let hosts = transform_hosts(me());

    let started = Instant::now();
    let media = app.upload_ok("c1", "u1", "long.wav", long_wav(600)).await;
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["error"]["code"], "timed_out", "{done}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "killed at a 1 s budget, failed after {:?}",
        started.elapsed()
    );
    assert_eq!(
        transform_children(me()),
        Vec::<u32>::new(),
        "the job lives on"
    );
    assert_eq!(transform_hosts(me()), hosts, "the host went with its job");
    photo_ready(&app).await;
}

#[tokio::test]
async fn a_job_that_dies_on_its_memory_ceiling_leaves_its_host_serving_the_next() {
    // 64 MiB for each job; decoding this PNG needs 108 MB, so the job's process aborts.
    let app = spawn_app_with(&[
        ("SATCHEL_WORKERS", "1"),
        ("SATCHEL_JOB_MEMORY_LIMIT_MIB", "64"),
        ("SATCHEL_JOB_MAX_ATTEMPTS", "1"),
    ])
    .await;
    photo_ready(&app).await;
    let hosts = transform_hosts(me());
    let media = app.upload_ok("c1", "u1", "huge.png", flat_png(6000)).await;
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    let code = if real_backend() {
        "dead_lettered"
    } else {
        "worker_crashed"
    };
    assert_eq!(done["error"]["code"], code, "{done}");
    assert_eq!(transform_hosts(me()), hosts, "the host died with its job");
    // The ceiling is the job's, not spent: the next job in the same host gets all of it.
    photo_ready(&app).await;
}

#[tokio::test]
async fn a_host_killed_mid_job_takes_its_job_along_and_is_replaced() {
    let app = spawn_app_with(&[("SATCHEL_WORKERS", "1")]).await;
    app.add_member("c1", "u1").await;
    // Fifteen minutes of audio: seconds of work, time to kill its host.
    let media = app.upload_ok("c1", "u1", "long.wav", long_wav(900)).await;
    let (host, job) = running_job(me()).await;
    kill(host, libc::SIGKILL);
    gone_within(&[host, job], Duration::from_secs(1), "the host or its job").await;

    // The job crashed and runs again, in a new host, to the end.
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "ready", "{done}");
    let (_, av) = hosts_of_each(1).await;
    assert_ne!(av, vec![host], "the killed host answers again?");
}

/// A host that died while idle (the OOM killer, an operator's `kill`) is not handed the next
/// job: a new one is started for it, at once.
#[tokio::test]
async fn a_job_for_a_dead_idle_host_runs_in_a_new_one() {
    let app = spawn_app_with(&[("SATCHEL_WORKERS", "1")]).await;
    let (stills, _) = hosts_of_each(1).await;
    kill(stills[0], libc::SIGKILL);
    gone_within(&stills, Duration::from_secs(1), "the killed host").await;

    let started = Instant::now();
    photo_ready(&app).await;
    // Not through a crash and its retry's back-off (2 s).
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "ready after {took:?}");
    let (now, _) = hosts_of_each(1).await;
    assert_ne!(now, stills, "the dead host is still counted");
}

/// A host that takes the request and never answers (stopped, or wedged in a system call) is
/// given up once the job's budget and a 10 s grace are over: it is killed, the job counts as
/// crashed and runs again in a new host.
#[tokio::test]
async fn a_host_that_stops_answering_is_killed_and_its_job_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    // An image job's budget is the larger of these two: 1 s.
    let presets = presets_with_budget(dir.path(), "[image.animation]", 1);
    let app = spawn_app_with(&[
        ("SATCHEL_WORKERS", "1"),
        ("SATCHEL_JOB_TIMEOUT_SECONDS", "1"),
        ("SATCHEL_PRESETS", &presets),
    ])
    .await;
    let (stills, _) = hosts_of_each(1).await;
    let hung = stills[0];
    kill(hung, libc::SIGSTOP);

    let started = Instant::now();
    photo_ready(&app).await;
    let took = started.elapsed();
    // The budget (1 s) and the grace (10 s) before the host is given up, then the retry's
    // back-off (2 s): the job did not end in the stopped host.
    assert!(took >= Duration::from_secs(11), "ready after {took:?}");
    gone_within(&[hung], Duration::from_secs(1), "the hung host").await;
    let (now, _) = hosts_of_each(1).await;
    assert_ne!(now, stills);
    let metrics = app.metrics().await;
    for outcome in ["retried", "ready"] {
        let line = format!("satchel_jobs_total{{kind=\"image\",outcome=\"{outcome}\"}} 1");
        assert!(metrics.contains(&line), "{line} not in {metrics}");
    }
}

#[tokio::test]
async fn a_worker_killed_mid_job_leaves_no_transform_process_behind() {
    let data = tempfile::tempdir().unwrap();
    let node = start_node(
        &["serve"],
        data.path(),
        [("SATCHEL_API_TOKENS", TOKEN), ("SATCHEL_WORKERS", "1")],
    )
    .await;
    node.add_member("c1", "u1").await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/v1/chats/c1/media?user=u1&filename=long.wav",
            node.base
        ))
        .bearer_auth(TOKEN)
        .body(long_wav(900))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let (host, job) = running_job(node.child.id()).await;
    crate::processes::signal(&node, "KILL");
    drop(node);
    gone_within(&[host, job], Duration::from_secs(1), "the host or its job").await;
}

/// A transform host is a peer the worker must not believe blindly. One whose every child
/// answers "this needs FFmpeg", as a subverted stills decoder could, gets each attempt run once
/// more in an FFmpeg host and no more; the FFmpeg host saying the same is a crash, and the job
/// fails once its attempts are spent instead of bouncing between hosts for ever.
#[tokio::test]
async fn a_host_that_always_asks_for_ffmpeg_gets_each_attempt_run_once_more_at_most() {
    use std::os::unix::fs::PermissionsExt;
    let bin = tempfile::tempdir().unwrap();
    let requests = bin.path().join("requests");
    // Alone in its directory, so that it is both kinds of host. It speaks the host's protocol
    // with builtins only (a host's environment has no PATH): per request line, it notes its
    // own arguments, then answers that its child exited 0 with the report `needs_av`.
    let host = bin.path().join("satchel-transform");
    let report = r#"{"outcome":"needs_av"}"#;
    let answer = format!(
        r#"{{"exit":{{"ended":"exited","code":0}},"report_len":{}}}"#,
        report.len()
    );
    std::fs::write(
        &host,
        format!(
            "#!/bin/sh\nwhile read -r line; do\n  echo \"$*\" >> '{}'\n  printf '%s\\n%s' '{answer}' '{report}'\ndone\n",
            requests.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = spawn_app_with(&[
        ("SATCHEL_WORKER_EXE", host.to_str().unwrap()),
        ("SATCHEL_JOB_MAX_ATTEMPTS", "2"),
    ])
    .await;
    let media = app
        .upload_ok("c1", "u1", "photo.jpg", fixture("photo.jpg"))
        .await;
    let done = app.wait_processed(media["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed", "{done}");
    let code = done["error"]["code"].as_str().unwrap();
    // The embedded queue's code, or the broker's once it has dead-lettered the job.
    assert!(
        ["worker_crashed", "too_many_attempts", "dead_lettered"].contains(&code),
        "{done}"
    );
    let asked = std::fs::read_to_string(&requests).unwrap();
    let asked: Vec<&str> = asked.lines().collect();
    // Each run is a stills host's and one more in an FFmpeg host's. The embedded queue runs a
    // job `job_max_attempts` times; RabbitMQ dead-letters it once it has come back more times
    // than its delivery limit (`job_max_attempts`), so it runs once more.
    let runs = if real_backend() { 3 } else { 2 };
    assert_eq!(asked.len(), 2 * runs, "{asked:?}");
    for pair in asked.chunks(2) {
        assert!(pair[0].contains("--stills"), "{asked:?}");
        assert!(!pair[1].contains("--stills"), "{asked:?}");
    }
}
