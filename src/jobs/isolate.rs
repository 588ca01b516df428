//! Every job's transform runs in a process of its own, never in the worker's address space.
//! FFmpeg's C decoders read hostile bytes there, and a decoder may ask for more memory than the
//! machine has: in a child, a crash, a runaway allocation or a job over its time budget ends
//! that one job, not the worker and every job it holds.
//!
//! The worker does not start a process per job: [`Isolation`] keeps long-lived transform hosts
//! (one per job running at once), each of which forks one child per job (`host.rs`). There are
//! two kinds ([`Hosts`]): a still image runs in a host of `satchel transform --host --stills`,
//! the service's own binary, which does not link FFmpeg (forking a process that maps FFmpeg's
//! ~170 shared objects costs ~2.5 ms of CPU more per job); audio, video, and an image whose
//! child finds it animated ([`Report::NeedsAv`]), run in a host of `satchel-transform
//! transform --host`, which does. A host is started with a cleared environment but for how to
//! log ([`child_env`]), no descriptor but its request and answer pipes and stderr, dies with the
//! worker (`PR_SET_PDEATHSIG`), and confines itself to the worker's scratch directory; each
//! job's child gets the job's memory ceiling (`RLIMIT_DATA`), its own input and output
//! directory as all it may reach, dies with its host, and is killed when the job's time is up.
//! It reports one JSON [`Report`]; a child that exits without one has crashed. A host that
//! dies or stops answering is replaced. [`Isolation::probe`] runs a probe child by the same
//! code.

use super::host::{Answer, Exit, Request, Task, MAX_REPORT, MAX_REQUEST};
use super::sandbox::Probe;
use crate::domain::{MediaMetadata, MediaPlaceholder, VariantInfo};
use satchel_workers::{Av, MediaKind, Presets, Processed, WorkerError};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
    /// The input needs FFmpeg, which this child's binary does not link (an animated image in
    /// a stills host): the job runs again in a host that has it. Nothing it wrote is kept.
    NeedsAv,
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
pub fn transform(
    kind: MediaKind,
    input: &Path,
    presets: &Presets,
    out_dir: &Path,
    av: Option<&dyn Av>,
) -> Report {
    match satchel_workers::process(kind, input, presets, out_dir, av) {
        Ok(processed) => Report::Done(output(processed)),
        Err(WorkerError::NeedsAv(_)) if av.is_none() => Report::NeedsAv,
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

/// The worker's side: transform hosts of both kinds, kept between jobs.
pub struct Isolation {
    /// `satchel-transform`, with FFmpeg.
    av: Kept,
    /// The service's `satchel` beside it, without; `satchel-transform` when there is none.
    stills: Kept,
    presets: Option<PathBuf>,
    memory_limit: u64,
    /// The scratch directory every job's files are in: all that a host may reach.
    within: PathBuf,
}

/// The hosts of one kind: their binary, and those idle now.
struct Kept {
    exe: PathBuf,
    idle: Mutex<Vec<Host>>,
}

impl Kept {
    fn of(exe: PathBuf) -> Self {
        Self {
            exe,
            idle: Mutex::new(Vec::new()),
        }
    }
}

/// The two kinds of transform host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    /// `transform --host --stills`: stills only, in the binary without FFmpeg when there is
    /// one. What needs FFmpeg answers [`Report::NeedsAv`].
    Stills,
    /// `transform --host` in `satchel-transform`: every kind.
    Av,
}

impl Hosts {
    /// Where a job of `kind` runs first.
    pub fn first_for(kind: MediaKind) -> Self {
        match kind {
            MediaKind::Image => Hosts::Stills,
            MediaKind::Audio | MediaKind::Video => Hosts::Av,
        }
    }
}

/// A host waits this long past a job's budget for its answer before it is given up as hung.
const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// The variables a host (and so each job's child) gets, all that it gets: how to log (stderr
/// is the worker's), the allocator's arena count, and backtraces if the worker has them. Never
/// a secret or a URL.
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
    /// Hosts of `exe` (`satchel-transform`, beside the worker's executable, or the one
    /// configured) and of the `satchel` beside it (stills; `exe` itself when `exe` has no
    /// `satchel` beside it), with the presets file each host reads once, for jobs whose files
    /// are beneath `within`.
    pub fn new(
        exe: PathBuf,
        presets: Option<PathBuf>,
        memory_limit: u64,
        within: PathBuf,
    ) -> std::io::Result<Self> {
        let exe = std::path::absolute(exe)?;
        let light = exe.with_file_name(format!("satchel{}", std::env::consts::EXE_SUFFIX));
        Ok(Self {
            stills: Kept::of(if light.is_file() { light } else { exe.clone() }),
            av: Kept::of(exe),
            presets: presets.map(std::path::absolute).transpose()?,
            memory_limit,
            within: std::path::absolute(within)?,
        })
    }

    fn kept(&self, hosts: Hosts) -> &Kept {
        match hosts {
            Hosts::Stills => &self.stills,
            Hosts::Av => &self.av,
        }
    }

    fn idle(&self, hosts: Hosts) -> &Mutex<Vec<Host>> {
        &self.kept(hosts).idle
    }

    /// Runs one transform in a child of a host and waits for it, at most `timeout` in all: a
    /// still in a stills host; what that child finds needs FFmpeg again, from an empty output
    /// directory, in an FFmpeg host, within what is left of the time.
    pub async fn run(
        &self,
        kind: MediaKind,
        input: &Path,
        out_dir: &Path,
        timeout: Duration,
    ) -> std::io::Result<Ended> {
        let deadline = tokio::time::Instant::now() + timeout;
        let first = Hosts::first_for(kind);
        let mut ended = self.run_in(first, kind, input, out_dir, timeout).await?;
        if first == Hosts::Stills && matches!(ended, Ended::Reported(Report::NeedsAv)) {
            // Whatever that child left there is not this run's.
            std::fs::remove_dir_all(out_dir)?;
            std::fs::create_dir(out_dir)?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(Ended::TimedOut);
            }
            ended = self.run_in(Hosts::Av, kind, input, out_dir, left).await?;
        }
        // Never from an FFmpeg host, which has what it asks for.
        Ok(match ended {
            Ended::Reported(Report::NeedsAv) => {
                Ended::Crashed("the transform asked for FFmpeg in the process that has it".into())
            }
            ended => ended,
        })
    }

    /// Runs one transform in a child of a host of `hosts`, at most `timeout`.
    async fn run_in(
        &self,
        hosts: Hosts,
        kind: MediaKind,
        input: &Path,
        out_dir: &Path,
        timeout: Duration,
    ) -> std::io::Result<Ended> {
        let task = Task::Transform {
            kind: kind.as_str().into(),
        };
        let (exit, report) = match self.ask(hosts, task, input, out_dir, timeout).await? {
            Ok(answered) => answered,
            Err(why) => return Ok(Ended::Crashed(why)),
        };
        match exit {
            Exit::Exited { code: 0 } => {}
            Exit::TimedOut => return Ok(Ended::TimedOut),
            Exit::Overlong => {
                return Ok(Ended::Crashed(
                    "the transform wrote more than a report".into(),
                ))
            }
            Exit::Exited { code } => {
                return Ok(Ended::Crashed(format!(
                    "the transform exited with status {code}"
                )))
            }
            Exit::Signaled { signal } => {
                return Ok(Ended::Crashed(format!(
                    "the transform was killed by signal {signal}"
                )))
            }
        }
        match serde_json::from_slice::<Report>(&report) {
            Ok(report) => Ok(Ended::Reported(report)),
            Err(e) => Ok(Ended::Crashed(format!(
                "the transform exited without a report: {e}"
            ))),
        }
    }

    /// Runs a probe child in a host of `hosts`, started and confined as [`run`](Self::run)
    /// runs a transform, that tries to read each of `open` and `neighbour` (another job's
    /// file) and to reach `connect` (`satchel sandbox-probe`).
    pub async fn probe(
        &self,
        hosts: Hosts,
        input: &Path,
        out_dir: &Path,
        open: &[PathBuf],
        connect: Option<SocketAddr>,
        neighbour: Option<&Path>,
    ) -> anyhow::Result<Probe> {
        let task = Task::Probe {
            open: open.to_vec(),
            connect,
            neighbour: neighbour.map(Path::to_path_buf),
        };
        let timeout = Duration::from_secs(30);
        let (exit, report) = self
            .ask(hosts, task, input, out_dir, timeout)
            .await?
            .map_err(anyhow::Error::msg)?;
        if exit != (Exit::Exited { code: 0 }) {
            anyhow::bail!("the probe ended: {exit:?}");
        }
        Ok(serde_json::from_slice(&report)?)
    }

    /// Has a host run `task`: its child's end and report, `Err(why)` when the host died or hung
    /// (it is then replaced), or an I/O error when no host could be started.
    async fn ask(
        &self,
        hosts: Hosts,
        task: Task,
        input: &Path,
        out_dir: &Path,
        timeout: Duration,
    ) -> std::io::Result<Result<(Exit, Vec<u8>), String>> {
        let request = Request {
            input: std::path::absolute(input)?,
            out_dir: std::path::absolute(out_dir)?,
            memory_limit: self.memory_limit,
            timeout_ms: timeout.as_millis().try_into().unwrap_or(u64::MAX),
            task,
        };
        let mut line = serde_json::to_vec(&request)?;
        line.push(b'\n');
        let mut host = match self.idle_host(hosts) {
            Some(host) => host,
            None => self.start(hosts)?,
        };
        if host.send(&line).await.is_err() {
            // A kept host that died since: nothing of the job has run yet, so a new one may
            // take it.
            host = self.start(hosts)?;
            if let Err(e) = host.send(&line).await {
                return Ok(Err(format!("the transform host takes no request: {e}")));
            }
        }
        match tokio::time::timeout(timeout + ANSWER_GRACE, host.receive()).await {
            Ok(Ok(answered)) => {
                self.idle(hosts).lock().expect("not poisoned").push(host);
                Ok(Ok(answered))
            }
            // Dropped, so killed with whatever child it still has.
            Ok(Err(e)) => Ok(Err(format!("the transform host failed: {e}"))),
            Err(_) => Ok(Err("the transform host stopped answering".into())),
        }
    }

    /// Fails when there is no transform binary to start: a worker without one would take jobs
    /// only to crash each of them.
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.av.exe.is_file() {
            anyhow::bail!(
                "the transform binary {} is missing: every job runs in satchel-transform, which \
                 is installed beside satchel (or set worker_exe)",
                self.av.exe.display()
            );
        }
        Ok(())
    }

    /// Starts hosts of `hosts` until `n` are kept, so that the first jobs do not wait for one
    /// to start.
    pub fn warm(&self, hosts: Hosts, n: usize) {
        let missing = n.saturating_sub(self.idle(hosts).lock().expect("not poisoned").len());
        for _ in 0..missing {
            match self.start(hosts) {
                Ok(host) => self.idle(hosts).lock().expect("not poisoned").push(host),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a transform host yet");
                    return;
                }
            }
        }
    }

    /// A kept host of `hosts` that is still alive.
    fn idle_host(&self, hosts: Hosts) -> Option<Host> {
        let mut idle = self.idle(hosts).lock().expect("not poisoned");
        while let Some(mut host) = idle.pop() {
            if matches!(host.child.try_wait(), Ok(None)) {
                return Some(host);
            }
        }
        None
    }

    /// `satchel-transform transform --host --within DIR [--preset FILE]` (`satchel transform
    /// --host --stills …` for stills): an environment of [`child_env`] only, the scratch
    /// directory as its working directory, no descriptor but its request pipe (stdin), its
    /// answer pipe (stdout) and the worker's stderr, and death with the worker.
    fn start(&self, hosts: Hosts) -> std::io::Result<Host> {
        let mut command = tokio::process::Command::new(&self.kept(hosts).exe);
        command.arg("transform").arg("--host");
        if hosts == Hosts::Stills {
            command.arg("--stills");
        }
        command
            .arg("--within")
            .arg(&self.within)
            .env_clear()
            .envs(child_env())
            .current_dir(&self.within)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(presets) = &self.presets {
            command.arg("--preset").arg(presets);
        }
        // SAFETY: only async-signal-safe calls (prctl, getppid, close_range) run between fork
        // and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl took effect.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("the worker exited"));
                }
                // Rust and our libraries open every descriptor close-on-exec, but one the
                // worker inherited (from its supervisor, say) may not be: mark them all, from
                // 3 up. Before Linux 5.11 this fails, and the host closes them in each child.
                libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let requests = child.stdin.take().expect("stdin is piped");
        let answers = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Host {
            child,
            requests,
            answers,
        })
    }
}

/// One transform host; killed when dropped.
struct Host {
    child: tokio::process::Child,
    requests: tokio::process::ChildStdin,
    answers: BufReader<tokio::process::ChildStdout>,
}

impl Host {
    /// Sends one request line.
    async fn send(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.requests.write_all(line).await?;
        self.requests.flush().await
    }

    /// Reads the answer to a request: the answer line, then the report.
    async fn receive(&mut self) -> std::io::Result<(Exit, Vec<u8>)> {
        let mut head = Vec::new();
        (&mut self.answers)
            .take(MAX_REQUEST)
            .read_until(b'\n', &mut head)
            .await?;
        if head.last() != Some(&b'\n') {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the host exited",
            ));
        }
        let answer: Answer = serde_json::from_slice(&head)?;
        if answer.report_len > MAX_REPORT {
            return Err(std::io::Error::other(
                "the host announced an overlong report",
            ));
        }
        let mut report = vec![0; answer.report_len];
        self.answers.read_exact(&mut report).await?;
        Ok((answer.exit, report))
    }
}
