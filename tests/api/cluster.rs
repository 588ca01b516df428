//! satchel scaled out, as an operator runs it: `satchel serve` API nodes and `satchel worker`
//! processes (the real binary) on one S3 server, RabbitMQ broker and PostgreSQL database, and
//! what happens when any of them fails.
//!
//! Real backends only: these tests fail without `SATCHEL_TEST_BACKEND=real`. Some restart
//! RabbitMQ or stop Garage, so `scripts/test-real.sh` runs them one at a time, after the rest
//! of the suite (the embedded run leaves them out by name).

use crate::helpers::*;
use crate::processes::{
    alive, metrics, signal, start_node_logging, terminate, transform_children, transform_hosts,
    Node,
};
use reqwest::StatusCode;
use satchel::config::S3Settings;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One deployment's shared backends: a database, a bucket prefix and a queue prefix of its
/// own, and the settings every process of it gets.
struct Cluster {
    env: Vec<(String, String)>,
    s3: S3Settings,
    client: reqwest::Client,
    /// The nodes' data directories, removed after the nodes stopped.
    dirs: std::sync::Mutex<Vec<TempDir>>,
    // Dropped after the nodes, which the tests hold and drop first.
    _broker: Option<TestBroker>,
    database: TestDatabase,
}

impl Cluster {
    async fn new() -> Cluster {
        assert!(
            real_backend(),
            "cluster tests need SATCHEL_TEST_BACKEND=real (scripts/test-real.sh)"
        );
        let database = TestDatabase::create().await;
        let mut env = vec![
            ("SATCHEL_DATABASE_URL".to_owned(), database.url.clone()),
            ("SATCHEL_API_TOKENS".to_owned(), TOKEN.to_owned()),
            (
                "SATCHEL_LINK_SECRET".to_owned(),
                "cluster-secret-0123456789abcdefgh".to_owned(),
            ),
            // Shared by every node, as the README asks of a cluster.
            (
                "SATCHEL_S3_BUCKET_KEY".to_owned(),
                "cluster-bucket-key-0123456789abcdef".to_owned(),
            ),
            ("SATCHEL_LOG".to_owned(), "warn".to_owned()),
        ];
        env.extend(s3_test_vars());
        env.extend(amqp_test_vars());
        let config = satchel::Config::load_from(None, env.clone().into_iter())
            .expect("the cluster's settings are valid");
        Cluster {
            env,
            s3: config.s3.clone().expect("the cluster uses S3"),
            client: reqwest::Client::new(),
            dirs: Default::default(),
            _broker: TestBroker::of(&config),
            database,
        }
    }

    async fn start(&self, args: &[&str], extra: &[(&str, &str)]) -> Node {
        self.launch(args, extra, Stdio::inherit()).await
    }

    /// `start` with the node's log written to `log`.
    async fn start_logging(&self, args: &[&str], log: &Path) -> Node {
        let file = std::fs::File::create(log).unwrap();
        self.launch(args, &[], file.into()).await
    }

    async fn launch(&self, args: &[&str], extra: &[(&str, &str)], log: Stdio) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let env = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        let env = env.chain(extra.iter().copied());
        let node = start_node_logging(args, dir.path(), env, log).await;
        self.dirs.lock().unwrap().push(dir);
        node
    }

    async fn api_node(&self) -> Node {
        self.start(&["serve"], &[]).await
    }

    async fn worker(&self, extra: &[(&str, &str)]) -> Node {
        self.start(&["worker", "--concurrency", "1"], extra).await
    }

    async fn member(&self, node: &Node, chat: &str, user: &str) {
        let r = self
            .client
            .put(format!("{}/v1/chats/{chat}/members/{user}", node.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }

    async fn upload(
        &self,
        node: &Node,
        chat: &str,
        name: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(format!(
                "{}/v1/chats/{chat}/media?user=u1&filename={name}",
                node.base
            ))
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn upload_ok(&self, node: &Node, chat: &str, name: &str, body: Vec<u8>) -> String {
        let r = self.upload(node, chat, name, body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn media(&self, node: &Node, id: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/v1/media/{id}", node.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// Waits until the media leaves `processing` and returns it.
    async fn settled(&self, node: &Node, id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let media = self.media(node, id).await;
            if media["status"] != "processing" {
                return media;
            }
            assert!(Instant::now() < deadline, "still processing: {media}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn all_ready(&self, node: &Node, ids: &[String]) {
        for id in ids {
            let media = self.settled(node, id, Duration::from_secs(120)).await;
            assert_eq!(media["status"], "ready", "{media}");
        }
    }

    /// Rows in the shared catalog's media table, looked at behind the service's back.
    async fn media_rows(&self) -> i64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.database.url)
            .await
            .unwrap();
        sqlx::query_scalar("SELECT count(*) FROM media")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

/// Jobs a worker finished with `outcome`, from its `/metrics`.
async fn jobs_done(client: &reqwest::Client, node: &Node, outcome: &str) -> u64 {
    let label = format!("outcome=\"{outcome}\"");
    metrics(client, &node.base)
        .await
        .lines()
        .filter(|l| l.starts_with("satchel_jobs_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The jobs with `outcome` that `nodes` counted, once the count reaches `want` (or after 5 s):
/// a worker counts a job just after recording its outcome, so a client that saw `ready` may
/// read the metrics a moment before the count.
async fn jobs_counted(client: &reqwest::Client, nodes: &[&Node], outcome: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut done = 0;
        for node in nodes {
            done += jobs_done(client, node, outcome).await;
        }
        if done >= want || Instant::now() > deadline {
            return done;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn run(program: &Path, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(status.success(), "{} {args:?}: {status}", program.display());
}

#[tokio::test]
async fn two_api_nodes_and_two_workers_share_one_deployment() {
    let cluster = Cluster::new().await;
    let (a, b) = (cluster.api_node().await, cluster.api_node().await);
    let (w1, w2) = (cluster.worker(&[]).await, cluster.worker(&[]).await);

    cluster.member(&a, "c1", "u1").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            cluster
                .upload_ok(&a, "c1", &format!("{i}.jpg"), fixture("photo.jpg"))
                .await,
        );
    }
    // Read, linked and downloaded through the other node.
    cluster.all_ready(&b, &ids).await;
    let done = jobs_counted(&cluster.client, &[&w1, &w2], "ready", 6).await;
    assert_eq!(done, 6, "each job ran exactly once");

    let r = cluster
        .client
        .post(format!("{}/v1/media/{}/links", b.base, ids[0]))
        .bearer_auth(TOKEN)
        .json(&json!({"user": "u1", "variants": ["original", "thumbnail"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let links: Value = r.json().await.unwrap();
    let original = links["links"]["original"].as_str().unwrap();
    assert!(original.starts_with(&b.base), "{original}");
    // A link signed by one node is good on the other: they share the link secret.
    let on_a = original.replacen(&b.base, &a.base, 1);
    let r = cluster.client.get(&on_a).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The stored original, location stripped: what the catalog says it is.
    let stored = cluster.media(&a, &ids[0]).await;
    assert_eq!(sha256_hex(&r.bytes().await.unwrap()), stored["sha256"]);
    let thumbnail = links["links"]["thumbnail"].as_str().unwrap();
    let r = cluster.client.get(thumbnail).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/webp");

    // Erasing the chat on one node removes its bucket.
    assert_eq!(s3_listing(&cluster.s3).await.0.len(), 1);
    let r = cluster
        .client
        .delete(format!("{}/v1/chats/c1", b.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(s3_listing(&cluster.s3).await.0, Vec::<String>::new());
    let r = cluster
        .client
        .get(format!("{}/v1/media/{}", a.base, ids[1]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_worker_killed_mid_job_leaves_the_job_to_another() {
    let cluster = Cluster::new().await;
    let api = cluster.api_node().await;
    let w1 = cluster.worker(&[]).await;
    cluster.member(&api, "c1", "u1").await;
    let id = cluster
        .upload_ok(&api, "c1", "clip.mp4", fixture("clip-1080p.mp4"))
        .await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let (hosts, job) = loop {
        let hosts = transform_hosts(w1.child.id());
        let job = transform_children(w1.child.id());
        if !job.is_empty() {
            break (hosts, job);
        }
        assert!(
            Instant::now() < deadline,
            "the worker never started the job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    signal(&w1, "KILL");
    drop(w1);
    // Its transform (the job's process and its host) dies with it rather than running on as
    // an orphan.
    let deadline = Instant::now() + Duration::from_secs(5);
    while job.iter().chain(&hosts).any(|&pid| alive(pid)) {
        assert!(
            Instant::now() < deadline,
            "the transform outlived its worker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cluster.media(&api, &id).await["status"], "processing");

    let w2 = cluster.worker(&[]).await;
    let media = cluster.settled(&api, &id, Duration::from_secs(120)).await;
    assert_eq!(media["status"], "ready", "{media}");
    assert_eq!(jobs_counted(&cluster.client, &[&w2], "ready", 1).await, 1);
}

#[tokio::test]
async fn with_every_worker_down_uploads_wait_and_a_new_worker_drains_them() {
    let cluster = Cluster::new().await;
    let api = cluster.api_node().await;
    cluster.member(&api, "c1", "u1").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            cluster
                .upload_ok(&api, "c1", &format!("{i}.jpg"), fixture("photo.jpg"))
                .await,
        );
    }
    ids.push(
        cluster
            .upload_ok(&api, "c1", "voice.ogg", fixture("voice.ogg"))
            .await,
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    for id in &ids {
        assert_eq!(cluster.media(&api, id).await["status"], "processing");
    }
    let _worker = cluster.worker(&[]).await;
    cluster.all_ready(&api, &ids).await;
}

#[tokio::test]
async fn uploads_accepted_while_rabbitmq_restarts_are_all_processed() {
    let cluster = Cluster::new().await;
    let api = cluster.api_node().await;
    let _worker = cluster.worker(&[]).await;
    cluster.member(&api, "c1", "u1").await;
    let mut ids = vec![
        cluster
            .upload_ok(&api, "c1", "before.jpg", fixture("photo.jpg"))
            .await,
    ];

    run(Path::new("rabbitmqctl"), &["stop_app"]);
    let restarted = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(3));
        run(Path::new("rabbitmqctl"), &["start_app"]);
    });
    // The broker is down for these: each is accepted, its job waits in the catalog's outbox.
    for i in 0..6 {
        ids.push(
            cluster
                .upload_ok(&api, "c1", &format!("during-{i}.jpg"), fixture("photo.jpg"))
                .await,
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    restarted.join().unwrap();
    ids.push(
        cluster
            .upload_ok(&api, "c1", "after.jpg", fixture("photo.jpg"))
            .await,
    );
    cluster.all_ready(&api, &ids).await;
}

#[tokio::test]
async fn with_garage_stopped_uploads_fail_with_503_and_leave_no_row() {
    let cluster = Cluster::new().await;
    let api = cluster.api_node().await;
    cluster.member(&api, "c1", "u1").await;
    cluster
        .upload_ok(&api, "c1", "before.bin", b"before".to_vec())
        .await;

    let garage = script("garage.sh");
    run(&garage, &["stop"]);
    let r = cluster
        .upload(&api, "c1", "during.bin", b"during".to_vec())
        .await;
    let stopped = async {
        assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
        let r = cluster
            .client
            .get(format!("{}/readyz", api.base))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable").await;
        assert_eq!(cluster.media_rows().await, 1);
    };
    // Garage comes back even when an assertion fails, or every later test would fail too.
    let checked = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        tokio::time::timeout(Duration::from_secs(60), stopped),
    ))
    .await;
    run(&garage, &["start"]);
    match checked {
        Ok(timed) => timed.expect("answered within a minute"),
        Err(panic) => std::panic::resume_unwind(panic),
    }

    cluster
        .upload_ok(&api, "c1", "after.bin", b"after".to_vec())
        .await;
    assert_eq!(cluster.media_rows().await, 2);
}

#[tokio::test]
async fn a_poison_job_is_dead_lettered_and_its_worker_lives_on() {
    let cluster = Cluster::new().await;
    let api = cluster.api_node().await;
    // 64 MiB for each transform; decoding this PNG needs 108 MB, so it dies every time.
    let worker = cluster
        .worker(&[("SATCHEL_JOB_MEMORY_LIMIT_MIB", "64")])
        .await;
    cluster.member(&api, "c1", "u1").await;
    let poison = cluster
        .upload_ok(&api, "c1", "poison.png", flat_png(6000))
        .await;
    let media = cluster
        .settled(&api, &poison, Duration::from_secs(120))
        .await;
    assert_eq!(media["status"], "failed", "{media}");
    assert_eq!(media["error"]["code"], "dead_lettered", "{media}");

    assert!(alive(worker.child.id()), "the worker died with its job");
    let fine = cluster
        .upload_ok(&api, "c1", "fine.jpg", fixture("photo.jpg"))
        .await;
    cluster.all_ready(&api, &[fine]).await;
}

#[tokio::test]
async fn sigterm_closes_the_broker_connections_and_logs_no_error() {
    let cluster = Cluster::new().await;
    let logs = tempfile::tempdir().unwrap();
    let (api_log, worker_log) = (logs.path().join("api"), logs.path().join("worker"));
    let mut api = cluster.start_logging(&["serve"], &api_log).await;
    let mut worker = cluster
        .start_logging(&["worker", "--concurrency", "1"], &worker_log)
        .await;
    cluster.member(&api, "c1", "u1").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let name = format!("{i}.jpg");
        ids.push(
            cluster
                .upload_ok(&api, "c1", &name, fixture("photo.jpg"))
                .await,
        );
    }
    // Both nodes now hold live connections: the API node its publishing link, the worker its
    // consumer and dead-letter consumer.
    cluster.all_ready(&api, &ids).await;

    for (node, log) in [(&mut worker, &worker_log), (&mut api, &api_log)] {
        let status = terminate(node).await;
        assert!(status.success(), "exit status {status}");
        let text = std::fs::read_to_string(log).unwrap();
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
        assert!(errors.is_empty(), "{}", errors.join("\n"));
    }
}

#[tokio::test]
async fn a_resumable_upload_begun_on_one_node_is_finished_on_the_other_after_a_kill() {
    let cluster = Cluster::new().await;
    let (mut a, b) = (cluster.api_node().await, cluster.api_node().await);
    cluster.member(&a, "c1", "u1").await;
    let r = cluster
        .client
        .post(format!("{}/v1/chats/c1/upload-tickets", a.base))
        .bearer_auth(TOKEN)
        .json(&json!({"user": "u1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let url_a = r.json::<Value>().await.unwrap()["upload_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(url_a.starts_with(&a.base), "{url_a}");
    // 13 MiB in chunks of 6 MiB: a multipart part of S3 staged by the first, more parts and
    // a tail by the rest.
    let bytes: Vec<u8> = (0..13 << 20).map(|i: usize| (i % 253) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let first = crate::tus_clients::tuspy(&url_a, &file, 6 << 20, "first");
    let shown = format!("{first:?}");
    let out = tokio::task::spawn_blocking(move || { first }.output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{shown}: {out:?}");
    // 6 MiB became a part of the multipart upload of the staged data, and nothing waits in a
    // tail object (only a remainder under 5 MiB would).
    let (_, objects) = s3_listing(&cluster.s3).await;
    let staged: Vec<String> = objects
        .iter()
        .map(|o| o.to_string_lossy().into_owned())
        .filter(|o| o.contains("/tus/"))
        .collect();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(
        staged[0].starts_with("s3-upload://") && staged[0].ends_with("/data"),
        "{staged:?}"
    );
    // The node that took the first chunk dies without a word.
    signal(&a, "KILL");
    let _ = a.child.wait();
    // Node B knows the upload from the catalog alone, and the client goes on there.
    let url_b = url_a.replacen(&a.base, &b.base, 1);
    let r = cluster
        .client
        .head(&url_b)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["upload-offset"], (6 << 20).to_string().as_str());
    let rest = crate::tus_clients::tuspy(&url_b, &file, 6 << 20, "resume");
    let shown = format!("{rest:?}");
    let out = tokio::task::spawn_blocking(move || { rest }.output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{shown}: {out:?}");
    let id = crate::tus_clients::media_of(&cluster.client, &url_b).await;
    let media = cluster.settled(&b, &id, Duration::from_secs(60)).await;
    assert_eq!(media["sha256"], sha256_hex(&bytes));
    assert_eq!(media["size"], bytes.len());
    // Nothing staged stays behind: the parts, the tail and the multipart upload are gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, objects) = s3_listing(&cluster.s3).await;
        let staged: Vec<_> = objects
            .iter()
            .filter(|o| o.to_string_lossy().contains("tus/"))
            .collect();
        if staged.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "staged objects stay: {staged:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
