//! The transform child's confinement, applied by the child to itself before it opens the
//! hostile input ([`confine`]), while it is still single-threaded (Landlock and seccomp bind
//! the calling thread and the threads and processes it starts later):
//!
//! 1. `PR_SET_NO_NEW_PRIVS`: no exec can gain privileges, and the two below need it.
//! 2. Landlock (Linux 5.13+, best effort): reads of the input file only, reads and writes
//!    beneath the output directory only, nothing else on any filesystem (the data directory,
//!    `/proc` of the worker, ...); from ABI 4 (6.7) no TCP bind or connect; from ABI 6 (6.12)
//!    no signal to, and no abstract UNIX socket of, a process outside the sandbox.
//! 3. seccomp: `socket()` and `io_uring_setup()` fail with `EACCES`, so no network of any
//!    family (UDP and UNIX sockets too, which Landlock does not cover) and no io_uring to go
//!    around the filter; nor do `setsid()` and `setpgid()` (the child has made its own process
//!    group just before), so nothing it starts leaves the group that is killed when the job
//!    ends: no process of a job outlives it, holding its files. A decoder that tries gets an
//!    error, not a kill.
//!
//! What a kernel lacks is skipped; [`Applied`] says what the child got, [`Support`] what this
//! kernel offers (the worker logs it once at start-up, with a warning when a layer is missing).
//! The parent's half (a cleared environment, no inherited descriptors) is in `isolate.rs`.
//! [`probe`] is the child of `satchel sandbox-probe`: it tries what a subverted decoder would.

use anyhow::Context;
use landlock::{
    make_bitflags, Access, AccessFs, AccessNet, LandlockStatus, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The newest Landlock ABI whose rights this module asks for (and is tested on).
const LANDLOCK_ABI: ABI = ABI::V6;

/// What the child may do beneath its output directory: create, write, read back, replace.
const OUT_DIR_ACCESS: landlock::BitFlags<AccessFs> = make_bitflags!(AccessFs::{
    ReadFile | ReadDir | WriteFile | MakeReg | RemoveFile | Truncate
});

/// What confinement one child got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The Landlock ABI enforced; `None` when the kernel has no Landlock.
    pub landlock: Option<i32>,
    pub seccomp: bool,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe(f, self.landlock, self.seccomp)
    }
}

/// `landlock ABI 7 (fs+tcp+scopes), seccomp on`.
fn describe(f: &mut fmt::Formatter<'_>, landlock: Option<i32>, seccomp: bool) -> fmt::Result {
    match landlock {
        Some(abi) => {
            let mut parts = vec!["fs"];
            if abi >= 4 {
                parts.push("tcp");
            }
            if abi >= 6 {
                parts.push("scopes");
            }
            write!(f, "landlock ABI {abi} ({})", parts.join("+"))?;
        }
        None => write!(f, "landlock off")?,
    }
    write!(f, ", seccomp {}", if seccomp { "on" } else { "off" })
}

/// Confines the calling process (see the module documentation). Errors are real failures (a
/// path that cannot be opened, a refused filter), never a kernel that lacks a feature.
pub fn confine(input: &Path, out_dir: &Path) -> anyhow::Result<Applied> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot set no_new_privs");
    }
    let landlock = landlock(input, out_dir).context("cannot apply the Landlock ruleset")?;
    let seccomp = seccomp(&[libc::SYS_setsid, libc::SYS_setpgid])
        .context("cannot apply the seccomp filter")?;
    let applied = Applied { landlock, seccomp };
    tracing::debug!(%applied, "confined");
    Ok(applied)
}

/// Confines the transform host (`host.rs`) before its first request: the same layers, with
/// the worker's scratch directory, where every job's files are, as all the filesystem it has.
/// Each job's child then confines itself further to its own files ([`confine`]).
pub fn confine_host(within: &Path) -> anyhow::Result<Applied> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot set no_new_privs");
    }
    let landlock = restrict(&[(within, OUT_DIR_ACCESS)])
        .context("cannot apply the host's Landlock ruleset")?;
    // Its children make their own process groups: no `setpgid` denied here.
    let seccomp = seccomp(&[]).context("cannot apply the seccomp filter")?;
    Ok(Applied { landlock, seccomp })
}

fn landlock(input: &Path, out_dir: &Path) -> anyhow::Result<Option<i32>> {
    restrict(&[
        (input, AccessFs::ReadFile.into()),
        (out_dir, OUT_DIR_ACCESS),
    ])
}

/// Landlock on the calling thread and what it starts later: `rules` are all the filesystem it
/// keeps; no TCP, no signal or abstract socket out of the sandbox.
fn restrict(rules: &[(&Path, landlock::BitFlags<AccessFs>)]) -> anyhow::Result<Option<i32>> {
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?;
    for (path, access) in rules {
        ruleset = ruleset.add_rule(PathBeneath::new(PathFd::new(path)?, *access))?;
    }
    let status = ruleset.restrict_self()?;
    Ok(match (status.ruleset, status.landlock) {
        (RulesetStatus::NotEnforced, _) => None,
        (_, LandlockStatus::Available { effective_abi, .. }) => Some(effective_abi as i32),
        _ => None,
    })
}

/// The system calls that fail with `EACCES` in the host and the child, and `more`.
fn denied_syscalls(more: &[i64]) -> Vec<i64> {
    let mut denied = vec![libc::SYS_socket, libc::SYS_io_uring_setup];
    denied.extend_from_slice(more);
    // The x32 ABI shares the x86-64 audit architecture, so its numbers (the same ones with
    // bit 30 set) would pass an x86-64 filter: deny those too, for kernels that enable x32.
    let x32 = if cfg!(target_arch = "x86_64") {
        0x4000_0000
    } else {
        0
    };
    denied.iter().flat_map(|&nr| [nr, nr | x32]).collect()
}

fn seccomp(more: &[i64]) -> anyhow::Result<bool> {
    use seccompiler::{SeccompAction, SeccompFilter};
    let filter = SeccompFilter::new(
        denied_syscalls(more)
            .into_iter()
            .map(|nr| (nr, vec![]))
            .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        std::env::consts::ARCH.try_into()?,
    )?;
    let program: seccompiler::BpfProgram = filter.try_into()?;
    match seccompiler::apply_filter_all_threads(&program) {
        Ok(()) => Ok(true),
        // A kernel built without seccomp filters.
        Err(seccompiler::Error::Seccomp(e))
            if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// What this kernel offers a child, found without confining anything: for the start-up line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    /// The kernel's Landlock ABI, or why there is none.
    pub landlock: Result<i32, &'static str>,
    pub seccomp: bool,
}

impl Support {
    pub fn detect() -> Self {
        // SAFETY: the documented version query: no pointer is read.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                1u32, // LANDLOCK_CREATE_RULESET_VERSION
            )
        };
        let landlock = match abi {
            v if v > 0 => Ok(v as i32),
            _ => Err(match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EOPNOTSUPP) => "built in but not enabled at boot: add it to lsm=",
                _ => "not in this kernel, or refused by a container's seccomp policy",
            }),
        };
        // SAFETY: prctl with integer arguments only; EINVAL without seccomp.
        let seccomp = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0;
        Self { landlock, seccomp }
    }

    /// What a child goes without on this kernel, in words; `None` when it gets everything.
    pub fn missing(&self) -> Option<String> {
        let mut missing = Vec::new();
        match self.landlock {
            Err(why) => missing.push(format!(
                "Landlock ({why}): the child can read whatever the service's user can"
            )),
            Ok(abi) if abi < 4 => missing.push(format!(
                "Landlock TCP rules (ABI {abi} < 4, Linux 6.7): the network is closed by seccomp alone"
            )),
            Ok(abi) if abi < 6 => missing.push(format!(
                "Landlock scopes (ABI {abi} < 6, Linux 6.12): the child may signal the worker"
            )),
            Ok(_) => {}
        }
        if !self.seccomp {
            missing.push("seccomp: the child may open sockets".into());
        }
        (!missing.is_empty()).then(|| missing.join("; "))
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe(f, self.landlock.ok(), self.seccomp)
    }
}

/// What a probe child managed: `"ok"`, or the error it got.
#[derive(Debug, Serialize, Deserialize)]
pub struct Probe {
    /// What [`confine`] applied.
    pub confinement: String,
    /// Reading its own input file.
    pub input: String,
    /// Opening its input for writing. The filesystem store hands a job the stored original
    /// itself (a hard link), so this must fail or a decoder could rewrite what is stored.
    pub input_write: String,
    /// Writing a file in its output directory and reading it back.
    pub output: String,
    /// Each path it was asked to open.
    pub open: BTreeMap<String, String>,
    /// Reading `/proc/PID/environ` of its parent, the worker.
    pub parent_environ: String,
    /// A TCP connection to the address it was given.
    pub connect: Option<String>,
    /// A UDP datagram to the same address.
    pub udp: Option<String>,
    /// A UNIX socket.
    pub unix: String,
    /// Signal 0 (no signal, the permission check only) to its parent, the worker.
    pub signal_parent: String,
    /// Reading a file of another job in the same scratch directory, when there was one.
    pub neighbour: Option<String>,
    /// Reading its stdin: `eof` when it is `/dev/null`, as it must be, not a pipe of the worker
    /// or of the transform host.
    pub stdin: String,
    /// A process it starts calling `setsid()`, which would take it out of the process group
    /// killed with the job.
    pub leave_group: String,
    /// The id of a process it forked that sleeps, staying in its process group: it must be
    /// gone once the job has ended.
    pub left_behind: i32,
    /// The names of its environment variables.
    pub env: Vec<String>,
    /// Its open file descriptors.
    pub fds: Vec<i32>,
}

fn outcome<T>(result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

/// The probe child: what a subverted decoder would try, once confined as `applied` says.
pub fn probe(
    applied: &Applied,
    input: &Path,
    out_dir: &Path,
    open: &[PathBuf],
    connect: Option<SocketAddr>,
    neighbour: Option<&Path>,
) -> Probe {
    // First, before this function opens anything itself.
    let fds = (0..1024)
        // SAFETY: F_GETFD only reads the descriptor's flags.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
        .collect();
    let written = out_dir.join("probe");
    let parent = std::os::unix::process::parent_id();
    Probe {
        confinement: applied.to_string(),
        input: outcome(std::fs::read(input)),
        input_write: outcome(std::fs::OpenOptions::new().append(true).open(input)),
        output: outcome(
            std::fs::write(&written, b"probe")
                .and_then(|()| std::fs::read(&written))
                .and_then(|read| match read == b"probe" {
                    true => Ok(()),
                    false => Err(std::io::Error::other("read back something else")),
                }),
        ),
        open: open
            .iter()
            .map(|p| (p.display().to_string(), outcome(std::fs::read(p))))
            .collect(),
        parent_environ: outcome(std::fs::read(format!("/proc/{parent}/environ"))),
        connect: connect.map(|addr| {
            outcome(std::net::TcpStream::connect_timeout(
                &addr,
                std::time::Duration::from_secs(5),
            ))
        }),
        udp: connect.map(|addr| {
            outcome(std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.send_to(b"x", addr)))
        }),
        unix: outcome(std::os::unix::net::UnixDatagram::unbound()),
        // SAFETY: signal 0 is only the permission check.
        signal_parent: outcome(match unsafe { libc::kill(parent as i32, 0) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }),
        neighbour: neighbour.map(|p| outcome(std::fs::read(p))),
        stdin: read_stdin(),
        leave_group: leave_group(),
        left_behind: left_behind(),
        env: std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect(),
        fds,
    }
}

/// Forks a process that calls `setsid()`: `ok` when it could, else its error.
fn leave_group() -> String {
    // SAFETY: the probe child is single-threaded; its fork calls only setsid and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            let code = match libc::setsid() {
                -1 => std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(255),
                _ => 0,
            };
            libc::_exit(code.clamp(0, 255))
        }
    }
    if pid < 0 {
        return std::io::Error::last_os_error().to_string();
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid || !libc::WIFEXITED(status) {
        return "the forked process did not exit".into();
    }
    match libc::WEXITSTATUS(status) {
        0 => "ok".into(),
        errno => std::io::Error::from_raw_os_error(errno).to_string(),
    }
}

/// Forks a process that lets go of its report pipe and stderr, so that nothing waits for it,
/// and sleeps for a minute; returns its id (or -1). It would outlive the job if the host did
/// not kill the job's process group.
fn left_behind() -> i32 {
    // SAFETY: the probe child is single-threaded; its fork calls only close, sleep and _exit.
    match unsafe { libc::fork() } {
        0 => unsafe {
            libc::close(1);
            libc::close(2);
            libc::sleep(60);
            libc::_exit(0)
        },
        pid => pid,
    }
}

/// What reading descriptor 0 gives, without waiting: `eof`, or what came instead.
fn read_stdin() -> String {
    let mut poll = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack, no wait.
    if unsafe { libc::poll(&mut poll, 1, 0) } <= 0 {
        return "nothing to read (not /dev/null)".into();
    }
    let mut buf = [0u8; 64];
    // SAFETY: reading into a local buffer.
    match unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) } {
        0 => "eof".into(),
        n if n > 0 => format!("read {n} bytes"),
        _ => std::io::Error::last_os_error().to_string(),
    }
}
