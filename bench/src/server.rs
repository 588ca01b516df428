//! The satchel under test: a deployment given with `--target`, or `satchel serve` started by
//! the bench as a child process on a free port with a fresh data directory. A child, rather
//! than the app inside the bench, so that its peak memory is its own.

use super::measure;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Target {
    pub base: String,
    pub token: String,
    pub embedded: Option<Embedded>,
}

pub struct Embedded {
    child: Child,
    /// Dropped after the child has stopped.
    _data: tempfile::TempDir,
    pub log: PathBuf,
}

impl Target {
    pub fn remote(url: &str, token: &str) -> Self {
        Target {
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            embedded: None,
        }
    }

    /// Starts `satchel serve` with the caller's `SATCHEL_*` settings (so an S3 store or a
    /// database configured there is used), except the listen address, data directory and
    /// token, which are the bench's own (and a SQLite catalog, which lives in the data
    /// directory); with the bench's `--preset` as its `SATCHEL_PRESETS`, so that it runs the
    /// same preset as the transforms and the peers it is compared with.
    pub async fn embedded(exe: &Path, out: &Path, preset: Option<&Path>) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let data = tempfile::Builder::new()
            .prefix("satchel-bench-")
            .tempdir()?;
        let token = format!("bench-{:032x}", rand::random::<u128>());
        let log = out.join("satchel-serve.log");
        let mut command = Command::new(exe);
        // A SQLite catalog belongs to one data directory: never share the caller's.
        if std::env::var("SATCHEL_DATABASE_URL").is_ok_and(|u| u.starts_with("sqlite:")) {
            command.env_remove("SATCHEL_DATABASE_URL");
        }
        if let Some(preset) = preset {
            command.env("SATCHEL_PRESETS", std::path::absolute(preset)?);
        }
        let child = command
            .arg("serve")
            .env("SATCHEL_LISTEN", format!("127.0.0.1:{port}"))
            .env("SATCHEL_DATA_DIR", data.path())
            .env("SATCHEL_API_TOKENS", &token)
            .env_remove("SATCHEL_PUBLIC_URL")
            .env("SATCHEL_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        let mut target = Target {
            base: format!("http://127.0.0.1:{port}"),
            token,
            embedded: Some(Embedded {
                child,
                _data: data,
                log,
            }),
        };
        target.wait_ready().await?;
        Ok(target)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = self.embedded.as_mut() {
                if let Some(status) = e.child.try_wait()? {
                    let log = std::fs::read_to_string(&e.log).unwrap_or_default();
                    bail!("satchel serve exited ({status}) before it was ready:\n{log}");
                }
            }
            let ready = http
                .get(format!("{}/readyz", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("satchel at {} was not ready within 60 s", self.base);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn server_pid(&self) -> Option<u32> {
        self.embedded.as_ref().map(|e| e.child.id())
    }

    pub async fn stop(mut self) {
        let Some(e) = self.embedded.as_mut() else {
            return;
        };
        // SIGTERM: satchel's graceful stop, so its data directory is not in use when removed.
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(e.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(e.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = e.child.kill();
        let _ = e.child.wait();
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(e) = self.embedded.as_mut() {
            if matches!(e.child.try_wait(), Ok(None)) {
                let _ = e.child.kill();
                let _ = e.child.wait();
            }
        }
    }
}

/// Peak memory of the server under test since the last reset, when it is a local child.
pub fn server_peak(target: &Target) -> Option<u64> {
    measure::peak_rss_of(Some(target.server_pid()?))
}
