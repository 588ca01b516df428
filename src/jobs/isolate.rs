//! Every job's transform runs in a child process (`satchel transform`), never in the worker's
//! own address space. FFmpeg's C decoders read hostile bytes there, and a decoder may ask for
//! more memory than the machine has: in a child, a crash, a runaway allocation or a job over its
//! time budget ends that one job, not the worker and every job it holds.
//!
//! The child gets a memory ceiling (`RLIMIT_DATA`), dies with its parent (`PR_SET_PDEATHSIG`),
//! and is killed when the job's time is up. It inherits no secret: its environment is cleared
//! but for how to log ([`child_env`]), every descriptor above stderr is closed on exec, and it
//! starts in its output directory. It reports one JSON [`Report`] on stdout; a child that exits
//! without one has crashed. [`Isolation::probe`] starts a probe child by the same code.

use super::sandbox::Probe;
use crate::domain::{MediaMetadata, MediaPlaceholder, VariantInfo};
use satchel_workers::{MediaKind, Presets, Processed, WorkerError};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// What a finished transform produced, as it crosses the process boundary.
#[derive(Debug, Serialize, Deserialize)]
pub struct Output {
    pub metadata: MediaMetadata,
    pub placeholder: Option<MediaPlaceholder>,
    pub variants: Vec<Produced>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Produced {
    pub name: String,
    /// Inside the job's output directory.
    pub path: PathBuf,
    pub info: VariantInfo,
}

/// The child's one line on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Report {
    Done(Output),
    Failed {
        code: String,
        message: String,
        retryable: bool,
    },
}

/// How a child run ended.
#[derive(Debug)]
pub enum Ended {
    Reported(Report),
    /// Killed when the job's time was up.
    TimedOut,
    /// Died or exited without a report: a signal, an abort on a failed allocation, a panic.
    Crashed(String),
}

/// The child side: runs the pipeline and says how it went. Never panics into the caller on a
/// worker error; a panic or an abort is exactly what the parent sees as a crash.
pub fn transform(kind: MediaKind, input: &Path, presets: &Presets, out_dir: &Path) -> Report {
    match satchel_workers::process(kind, input, presets, out_dir) {
        Ok(processed) => Report::Done(output(processed)),
        Err(e) => Report::Failed {
            code: e.code().to_owned(),
            message: e.to_string(),
            retryable: WorkerError::is_retryable(&e),
        },
    }
}

fn output(p: Processed) -> Output {
    Output {
        metadata: MediaMetadata {
            width: p.metadata.width,
            height: p.metadata.height,
            duration_ms: p.metadata.duration_ms,
            waveform: p.metadata.waveform,
        },
        placeholder: p.placeholder.map(|p| MediaPlaceholder {
            blurhash: p.blurhash,
            thumbhash: p.thumbhash,
        }),
        variants: p
            .variants
            .into_iter()
            .map(|v| Produced {
                info: VariantInfo {
                    mime: v.mime,
                    size: v.size,
                    width: v.width,
                    height: v.height,
                    duration_ms: v.duration_ms,
                },
                name: v.name,
                path: v.path,
            })
            .collect(),
    }
}

/// The parent side.
pub struct Isolation {
    pub exe: PathBuf,
    pub presets: Option<PathBuf>,
    pub memory_limit: u64,
    pub timeout: Duration,
}

/// Reports are small; anything longer is not one.
const MAX_REPORT: u64 = 1 << 20;

/// The variables a child gets, all that it gets: how to log (stderr is the worker's), the
/// allocator's arena count, and backtraces if the worker has them. Never a secret or a URL.
fn child_env() -> Vec<(&'static str, OsString)> {
    let mut env = vec![
        ("SATCHEL_LOG", OsString::from("warn")),
        // One malloc arena: the ceiling is then spent on pixels, not on per-thread heaps.
        ("MALLOC_ARENA_MAX", OsString::from("2")),
    ];
    for name in ["SATCHEL_LOG_FORMAT", "RUST_BACKTRACE"] {
        if let Some(value) = std::env::var_os(name) {
            env.push((name, value));
        }
    }
    env
}

impl Isolation {
    /// Runs one transform in a child and waits for it, at most `timeout`.
    pub async fn run(
        &self,
        kind: MediaKind,
        input: &Path,
        out_dir: &Path,
    ) -> std::io::Result<Ended> {
        let mut command = self.command(input, out_dir)?;
        command.arg("--kind").arg(kind.as_str());
        let Some((status, report)) = self.finish(command).await? else {
            return Ok(Ended::TimedOut);
        };
        if !status.success() {
            return Ok(Ended::Crashed(format!("the transform {status}")));
        }
        match serde_json::from_slice::<Report>(&report) {
            Ok(report) => Ok(Ended::Reported(report)),
            Err(e) => Ok(Ended::Crashed(format!(
                "the transform exited without a report: {e}"
            ))),
        }
    }

    /// Runs a probe child, started and confined as [`run`](Self::run) starts a transform, that
    /// tries to read each of `open` and to reach `connect` (`satchel sandbox-probe`).
    pub async fn probe(
        &self,
        input: &Path,
        out_dir: &Path,
        open: &[PathBuf],
        connect: Option<SocketAddr>,
    ) -> anyhow::Result<Probe> {
        let mut command = self.command(input, out_dir)?;
        command.arg("--probe");
        for path in open {
            command.arg("--probe-open").arg(path);
        }
        if let Some(addr) = connect {
            command.arg("--probe-connect").arg(addr.to_string());
        }
        let Some((status, report)) = self.finish(command).await? else {
            anyhow::bail!("the probe timed out");
        };
        if !status.success() {
            anyhow::bail!("the probe {status}");
        }
        Ok(serde_json::from_slice(&report)?)
    }

    /// `satchel transform --out OUT_DIR [--preset FILE] INPUT`, to which the caller adds what
    /// the child is to do: an environment of [`child_env`] only, its output directory as its
    /// working directory, no descriptor but stdin (`/dev/null`), stdout (the report) and
    /// stderr (the worker's), a memory ceiling, and death with the worker.
    /// Every path is made absolute first, since the child starts in another directory.
    fn command(&self, input: &Path, out_dir: &Path) -> std::io::Result<tokio::process::Command> {
        let absolute = |path: &Path| std::path::absolute(path);
        let mut command = tokio::process::Command::new(absolute(&self.exe)?);
        command
            .arg("transform")
            .arg("--out")
            .arg(absolute(out_dir)?)
            .arg(absolute(input)?)
            .env_clear()
            .envs(child_env())
            .current_dir(out_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(presets) = &self.presets {
            command.arg("--preset").arg(absolute(presets)?);
        }
        let limit = self.memory_limit;
        // SAFETY: only async-signal-safe calls (setrlimit, prctl, getppid, close_range) run
        // between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_DATA, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl took effect.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("the worker exited"));
                }
                // Rust and our libraries open every descriptor close-on-exec, but one the
                // worker inherited (from its supervisor, say) may not be: mark them all, from
                // 3 up. Before Linux 5.11 this fails, and only the libraries' care is left.
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                Ok(())
            });
        }
        Ok(command)
    }

    /// Spawns `command` and waits for its exit, at most `timeout`: its status and stdout, or
    /// `None` when it ran out of time and was killed.
    async fn finish(
        &self,
        mut command: tokio::process::Command,
    ) -> std::io::Result<Option<(ExitStatus, Vec<u8>)>> {
        let mut child = command.spawn()?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let finished = async {
            let mut report = Vec::new();
            (&mut stdout)
                .take(MAX_REPORT)
                .read_to_end(&mut report)
                .await?;
            let status = child.wait().await?;
            std::io::Result::Ok((status, report))
        };
        match tokio::time::timeout(self.timeout, finished).await {
            Ok(finished) => finished.map(Some),
            Err(_) => {
                // kill_on_drop would do it too, but the job is not over until the child is.
                let _ = child.kill().await;
                Ok(None)
            }
        }
    }
}
