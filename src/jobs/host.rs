//! The transform host: a long-lived `satchel-transform transform --host` process (or `satchel
//! transform --host --stills`, without FFmpeg, for stills) that starts each job's transform as
//! a fork of itself, so that a job pays neither for starting the binary (loading FFmpeg's
//! libraries costs ~40 ms of CPU) nor for a process that saw another job's bytes.
//!
//! The worker keeps one host per job it runs at once (`isolate.rs`) and sends it one
//! [`Request`] per line on its stdin. The host itself never reads an input: for each request it
//! forks a child, which confines itself to that job's input and output directory
//! (`sandbox::confine`, as a child started afresh would), sets the job's memory ceiling, runs
//! the job ([`execute`]) and writes its report into a pipe of its own. The host waits for the
//! child at most the job's time budget (then kills it), and answers one [`Answer`] line followed
//! by the report's bytes on its stdout.
//!
//! What each job's process holds is what a freshly started child held: no secret (the host's
//! environment is cleared by the worker), no descriptor but `/dev/null` as stdin, its report
//! pipe as stdout and the worker's stderr (the host's request and answer pipes are closed), and
//! access to its own job's files only. No process runs two jobs, so a decoder subverted by one
//! hostile input can never see a later job: the bound on reuse is one job per process, for every
//! kind. The host confines itself too, before its first request: it may reach nothing outside
//! the worker's scratch directory (`--within`), opens no socket, and is single-threaded, which
//! is what makes forking it safe.

use super::sandbox;
use crate::domain::Kind;
use satchel_workers::{Av, Presets};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Reports are small; anything longer is not one.
pub const MAX_REPORT: usize = 1 << 20;

/// A request line is a few paths; anything longer is not one.
pub const MAX_REQUEST: u64 = 64 << 10;

/// One job for the host: what to run, on which files, within which bounds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    /// Absolute paths: the host and its children do not share the worker's directory.
    pub input: PathBuf,
    pub out_dir: PathBuf,
    /// The child's `RLIMIT_DATA`, in bytes.
    pub memory_limit: u64,
    /// The job's time budget; the child is killed when it is up.
    pub timeout_ms: u64,
    pub task: Task,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum Task {
    /// The job's pipeline, `image`, `audio` or `video`.
    Transform { kind: String },
    /// What a subverted decoder would try (`satchel sandbox-probe`).
    Probe {
        open: Vec<PathBuf>,
        connect: Option<SocketAddr>,
        /// A file of another job in the same scratch directory.
        neighbour: Option<PathBuf>,
    },
}

/// How a job's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ended", rename_all = "snake_case")]
pub enum Exit {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    /// Killed when its time was up.
    TimedOut,
    /// Killed for writing more than a report.
    Overlong,
}

/// The host's answer line; `report_len` bytes of the child's report follow it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub exit: Exit,
    pub report_len: usize,
}

/// What a job's process does once confined: the JSON it reports. `av` is the binary's FFmpeg,
/// `None` in a stills host.
pub fn execute(
    task: &Task,
    input: &Path,
    out_dir: &Path,
    presets: &Presets,
    av: Option<&dyn Av>,
) -> Vec<u8> {
    let report = match task {
        Task::Transform { kind } => match Kind::parse(kind).and_then(Kind::pipeline) {
            Some(kind) => match sandbox::confine(input, out_dir) {
                Ok(_) => serde_json::to_vec(&super::isolate::transform(
                    kind, input, presets, out_dir, av,
                )),
                Err(e) => return failure(&e),
            },
            None => return failure(&anyhow::anyhow!("no pipeline for {kind:?}")),
        },
        Task::Probe {
            open,
            connect,
            neighbour,
        } => match sandbox::confine(input, out_dir) {
            Ok(applied) => serde_json::to_vec(&sandbox::probe(
                &applied,
                input,
                out_dir,
                open,
                *connect,
                neighbour.as_deref(),
            )),
            Err(e) => return failure(&e),
        },
    };
    report.unwrap_or_default()
}

/// A child that cannot even confine itself writes no report: the worker sees a crash.
fn failure(e: &anyhow::Error) -> Vec<u8> {
    eprintln!("satchel transform: {e:#}");
    Vec::new()
}

/// The host's loop: confine, then one forked child per request line until stdin closes.
pub fn serve(within: &Path, presets: &Presets, av: Option<&dyn Av>) -> anyhow::Result<()> {
    // Opened before the sandbox closes the filesystem; every child's stdin.
    let devnull = File::open("/dev/null")?;
    sandbox::confine_host(within)?;
    let mut requests = std::io::stdin().lock();
    // The answers go straight to the descriptor: nothing buffered in `std::io::stdout` can be
    // copied into a child by the fork and written again by it.
    // SAFETY: descriptor 1 is this process's stdout, open for its whole life; ManuallyDrop
    // keeps it open.
    let mut answers = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    // One buffer, reused and wiped: a child forked later finds no earlier report in the heap.
    let mut report = Vec::with_capacity(MAX_REPORT + 1);
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut requests)
            .take(MAX_REQUEST)
            .read_until(b'\n', &mut line)?
            == 0
        {
            return Ok(());
        }
        let request: Request = serde_json::from_slice(&line)
            .map_err(|e| anyhow::anyhow!("not a transform request: {e}"))?;
        let exit = run_child(&request, presets, av, &devnull, &mut report)?;
        let answer = Answer {
            exit,
            report_len: report.len(),
        };
        let mut head = serde_json::to_vec(&answer)?;
        head.push(b'\n');
        answers.write_all(&head)?;
        answers.write_all(&report)?;
        answers.flush()?;
        wipe(&mut report);
    }
}

/// Zeroes a report and empties it, keeping its allocation.
fn wipe(report: &mut Vec<u8>) {
    report.iter_mut().for_each(|b| *b = 0);
    report.clear();
}

fn last_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Forks the job's process, collects its report and waits for its end, at most the budget.
fn run_child(
    request: &Request,
    presets: &Presets,
    av: Option<&dyn Av>,
    devnull: &File,
    report: &mut Vec<u8>,
) -> std::io::Result<Exit> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(last_error());
    }
    // SAFETY: both were just opened and are owned here alone.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let host = std::process::id() as libc::pid_t;
    let started = Instant::now();
    // SAFETY: this process is single-threaded (the host never starts a thread), so the child
    // may run ordinary code after the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_error());
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child(
                request,
                presets,
                av,
                host,
                devnull.as_raw_fd(),
                writer.as_raw_fd(),
            )
        }))
        .unwrap_or(101);
        // SAFETY: the child must never return into the host's loop.
        unsafe { libc::_exit(code) }
    }
    drop(writer);
    wait_child(
        pid,
        &reader,
        started + Duration::from_millis(request.timeout_ms),
        report,
    )
}

/// In the forked child: the job's bounds and descriptors, then the job. Returns the exit code.
fn child(
    request: &Request,
    presets: &Presets,
    av: Option<&dyn Av>,
    host: libc::pid_t,
    devnull: RawFd,
    report: RawFd,
) -> i32 {
    let limit = libc::rlimit {
        rlim_cur: request.memory_limit,
        rlim_max: request.memory_limit,
    };
    // SAFETY: plain system calls on integers and descriptors this process owns.
    unsafe {
        // Its own process group, so that whatever it starts ends with it.
        libc::setpgid(0, 0);
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != host {
            return 70;
        }
        if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0
            || libc::dup2(devnull, 0) < 0
            || libc::dup2(report, 1) < 0
        {
            return 71;
        }
        // The pipe was made non-blocking for the host's end; the report is written blocking.
        let flags = libc::fcntl(1, libc::F_GETFL);
        if flags < 0 || libc::fcntl(1, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return 71;
        }
        // The request and answer pipes, the report pipe's other copy, `/dev/null`'s: none is
        // the job's.
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..1024 {
                libc::close(fd);
            }
        }
    }
    if std::env::set_current_dir(&request.out_dir).is_err() {
        return 72;
    }
    let bytes = execute(&request.task, &request.input, &request.out_dir, presets, av);
    if bytes.is_empty() {
        return 73;
    }
    // SAFETY: descriptor 1 is now the report pipe; ManuallyDrop leaves closing it to _exit.
    let mut out = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
    match out.write_all(&bytes) {
        Ok(()) => 0,
        Err(_) => 74,
    }
}

/// Reads the report from `reader` and waits for `pid`, killing it (and its process group) at
/// `deadline` or once it has written more than a report.
fn wait_child(
    pid: libc::pid_t,
    reader: &OwnedFd,
    deadline: Instant,
    report: &mut Vec<u8>,
) -> std::io::Result<Exit> {
    // SAFETY: pidfd_open with a pid this process has not reaped yet.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if pidfd < 0 {
        let e = last_error();
        kill(pid);
        return Err(e);
    }
    // SAFETY: just opened, owned here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    let mut open = true;
    let mut exited = false;
    let ended = loop {
        if open {
            // Straight into the report's own buffer, never past its capacity: no copy of a
            // report is left on the stack or in a freed allocation for a later child to find.
            let room = report.capacity() - report.len();
            let spare = report.spare_capacity_mut();
            // SAFETY: reading at most `room` bytes into the vector's spare capacity, then
            // counting only what was read.
            let n = unsafe { libc::read(reader.as_raw_fd(), spare.as_mut_ptr().cast(), room) };
            match n {
                0 => open = false,
                n if n > 0 => {
                    // SAFETY: the read initialised `n` more bytes.
                    unsafe { report.set_len(report.len() + n as usize) };
                    if report.len() > MAX_REPORT {
                        break Some(Exit::Overlong);
                    }
                    continue;
                }
                _ if last_error().kind() == std::io::ErrorKind::WouldBlock => {}
                _ => return Err(last_error()),
            }
        }
        if exited {
            // Its report is read (something it started may still hold the pipe open: what
            // is not written by now is not part of it).
            break None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Some(Exit::TimedOut);
        }
        let mut polled = [
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if open { reader.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: two pollfds in a local array.
        if unsafe { libc::poll(polled.as_mut_ptr(), 2, ms) } < 0
            && last_error().kind() != std::io::ErrorKind::Interrupted
        {
            return Err(last_error());
        }
        exited = polled[0].revents != 0;
    };
    kill(pid);
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if last_error().kind() != std::io::ErrorKind::Interrupted {
            return Err(last_error());
        }
    }
    if let Some(killed) = ended {
        wipe(report);
        return Ok(killed);
    }
    Ok(if libc::WIFSIGNALED(status) {
        Exit::Signaled {
            signal: libc::WTERMSIG(status),
        }
    } else {
        Exit::Exited {
            code: libc::WEXITSTATUS(status),
        }
    })
}

/// Kills the child's process group and the child; before it is reaped, so neither id can
/// belong to another process yet.
fn kill(pid: libc::pid_t) {
    // SAFETY: signals to our own unreaped child and the group it made.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}
