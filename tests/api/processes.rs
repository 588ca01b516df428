//! The real `satchel` binary as a child of the test, for the tests that need whole processes:
//! stopping and killing them, or several of them on the same backends.

use reqwest::StatusCode;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `satchel` process listening on `base`; killed when dropped.
pub struct Node {
    pub child: Child,
    pub base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Makes `user` a member of `chat` through the node's API.
    pub async fn add_member(&self, chat: &str, user: &str) {
        let r = reqwest::Client::new()
            .put(format!("{}/v1/chats/{chat}/members/{user}", self.base))
            .bearer_auth(crate::helpers::TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
}

/// Uploads `n` copies of fixture `name` as `<i>.<ext>` to chat `c1` as `u1` (made a member
/// first) through `node`; their ids.
pub async fn upload_many(node: &Node, n: usize, name: &str, ext: &str) -> Vec<String> {
    let client = reqwest::Client::new();
    node.add_member("c1", "u1").await;
    let body = crate::helpers::fixture(name);
    let mut ids = Vec::new();
    for i in 0..n {
        let r = client
            .post(format!(
                "{}/v1/chats/c1/media?user=u1&filename={i}.{ext}",
                node.base
            ))
            .bearer_auth(crate::helpers::TOKEN)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let media: serde_json::Value = r.json().await.unwrap();
        ids.push(media["id"].as_str().unwrap().to_owned());
    }
    ids
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `satchel ARGS` on a free port with `data_dir` and `env`, and waits until its
/// `/readyz` answers 200.
pub async fn start_node<'a>(
    args: &[&str],
    data_dir: &Path,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Node {
    start_node_logging(args, data_dir, env, Stdio::inherit()).await
}

/// `start_node` with the process's log (its stderr) sent to `log`.
pub async fn start_node_logging<'a>(
    args: &[&str],
    data_dir: &Path,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
    log: impl Into<Stdio>,
) -> Node {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_satchel"))
        .args(args)
        .env("SATCHEL_LISTEN", format!("127.0.0.1:{port}"))
        .env("SATCHEL_DATA_DIR", data_dir)
        .env("SATCHEL_LOG", "warn")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("satchel starts");
    let node = Node {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let ready = format!("{}/readyz", node.base);
    wait_until_ok(
        &reqwest::Client::new(),
        &ready,
        &format!("satchel {args:?}"),
    )
    .await;
    node
}

/// Asks `url` every 50 ms until it answers 200, for at most 60 s (then fails, naming `what`).
pub async fn wait_until_ok(client: &reqwest::Client, url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status() == StatusCode::OK {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what} did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends the signal `name` (`TERM`, `KILL`, ...) to the node's process.
pub fn signal(node: &Node, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(node.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Sends SIGTERM and waits for the exit, at most 30 s.
pub async fn terminate(node: &mut Node) -> std::process::ExitStatus {
    signal(node, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of a node's `/metrics`.
pub async fn metrics(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The children of process `pid` (each listed under the thread that spawned it).
fn children(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        children.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    children
}

/// The transform hosts of worker process `pid`: its `satchel transform --host` children.
pub fn transform_hosts(pid: u32) -> Vec<u32> {
    let mut hosts = children(pid);
    hosts.retain(|child| {
        std::fs::read(format!("/proc/{child}/cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == b"--host"))
    });
    hosts
}

/// The job processes of worker process `pid` running right now: the children its transform
/// hosts forked, one per job.
pub fn transform_children(pid: u32) -> Vec<u32> {
    transform_hosts(pid)
        .into_iter()
        .flat_map(children)
        .collect()
}

/// Polls the media until it is no longer processing; returns it.
pub async fn settled(node: &Node, id: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client
            .get(format!("{}/v1/media/{id}", node.base))
            .bearer_auth(crate::helpers::TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let media: serde_json::Value = r.json().await.unwrap();
        if media["status"] != "processing" {
            return media;
        }
        assert!(Instant::now() < deadline, "still processing: {media}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The program process `pid` runs (its `argv[0]`).
pub fn program_of(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap();
    String::from_utf8_lossy(argv0).into_owned()
}

/// Whether process `pid` exists (a zombie not yet reaped counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}
