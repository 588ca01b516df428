//! Resumable uploads driven by off-the-shelf tus clients, as mobile and web apps would send
//! them: `tuspy` (PyPI) and `tus-js-client` (npm, under node), installed by
//! `scripts/install-deps.sh --test` into `/opt/satchel-test` (`SATCHEL_TEST_TUS_DIR`). A
//! missing client is a failure, never a skip. The upload cut mid-chunk goes through a proxy
//! that kills the first connection after some bytes; the client must resume it by itself.

use crate::helpers::*;
use crate::tus::{blob, ticket};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub fn tus_dir() -> PathBuf {
    std::env::var_os("SATCHEL_TEST_TUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/opt/satchel-test".into())
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// Runs a client to the end (in a blocking task: the server runs in this process); its
/// stdout, parsed.
async fn run(mut command: Command) -> Value {
    let shown = format!("{command:?}");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| {
            panic!("{shown}: {e} (run scripts/install-deps.sh --test to install the tus clients)")
        });
    assert!(
        output.status.success(),
        "{shown} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{shown} printed {stdout:?}: {e}"))
}

pub fn tuspy(url: &str, file: &std::path::Path, chunk: usize, mode: &str) -> Command {
    let mut c = Command::new(tus_dir().join("venv/bin/python"));
    c.arg(script("tuspy_upload.py"))
        .arg(url)
        .arg(file)
        .arg(chunk.to_string())
        .arg(mode);
    c
}

fn tus_js(url: &str, file: &std::path::Path, chunk: usize) -> Command {
    let mut c = Command::new("node");
    c.env("NODE_PATH", tus_dir().join("node/node_modules"))
        .arg(script("tus_js_upload.cjs"))
        .arg(url)
        .arg(file)
        .arg(chunk.to_string());
    c
}

/// The media the upload at `url` became (its `HEAD`'s `Satchel-Media-Id`).
pub async fn media_of(app_client: &reqwest::Client, url: &str) -> String {
    let r = app_client
        .head(url)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    r.headers()["satchel-media-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn tuspy_uploads_in_checksummed_chunks() {
    let app = spawn_app().await;
    let url = ticket(&app, "c1", "u1", json!({})).await;
    let bytes = blob(300_000);
    let file = app.dir.path().join("upload.bin");
    std::fs::write(&file, &bytes).unwrap();
    let done = run(tuspy(&url, &file, 64 * 1024, "all")).await;
    assert_eq!(done["offset"], bytes.len());
    let id = media_of(&app.client, &url).await;
    let media: Value = app.media(&id).await.json().await.unwrap();
    assert_eq!(media["sha256"], sha256_hex(&bytes));
    assert_eq!(media["filename"], "tuspy.bin");
}

/// A proxy to `upstream` (set once the app listens) that cuts its first connection after
/// `cut_after` bytes from the client, mid-request; later connections pass whole.
struct CutProxy {
    addr: SocketAddr,
    upstream: Arc<std::sync::OnceLock<SocketAddr>>,
    cuts: Arc<AtomicUsize>,
}

async fn cut_proxy(cut_after: usize) -> CutProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = Arc::new(std::sync::OnceLock::<SocketAddr>::new());
    let cuts = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(AtomicBool::new(true));
    tokio::spawn({
        let (upstream, cuts) = (upstream.clone(), cuts.clone());
        async move {
            while let Ok((client, _)) = listener.accept().await {
                let Some(to) = upstream.get().copied() else {
                    continue;
                };
                let cut_this = first.swap(false, Ordering::SeqCst);
                let cuts = cuts.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(to).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let up = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        let mut sent = 0usize;
                        loop {
                            let n = from_client.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            if cut_this && sent + n > cut_after {
                                let _ = to_server.write_all(&buf[..cut_after - sent]).await;
                                cuts.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            sent += n;
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = tokio::io::copy(&mut from_server, &mut to_client);
                    // Whichever ends first, both sockets close with this task.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        }
    });
    CutProxy {
        addr,
        upstream,
        cuts,
    }
}

#[tokio::test]
async fn tus_js_client_resumes_an_upload_whose_connection_was_cut_mid_chunk() {
    // The app's public URL is the proxy's, so the upload URL and Location lead through it.
    let proxy = cut_proxy(400_000).await;
    let public = format!("http://{}", proxy.addr);
    let app = spawn_app_with(&[("SATCHEL_PUBLIC_URL", public.as_str())]).await;
    proxy.upstream.set(app.addr).unwrap();
    let url = ticket(&app, "c1", "u1", json!({})).await;
    assert!(url.starts_with(&public), "{url}");
    let bytes = blob(1_000_000);
    let file = app.dir.path().join("upload.bin");
    std::fs::write(&file, &bytes).unwrap();

    let done = run(tus_js(&url, &file, 256 * 1024)).await;
    assert_eq!(
        proxy.cuts.load(Ordering::SeqCst),
        1,
        "the first connection was cut"
    );
    let id = done["mediaId"]
        .as_str()
        .expect("Satchel-Media-Id on the last PATCH");
    assert_eq!(id, media_of(&app.client, &url).await);
    let media: Value = app.media(id).await.json().await.unwrap();
    assert_eq!(media["sha256"], sha256_hex(&bytes), "every byte, once");
    assert_eq!(media["filename"], "tus-js.bin");
}
