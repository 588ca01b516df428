//! What a transform child can reach. [`probe`] is the child of `satchel sandbox-probe`: started
//! as a job starts a transform, it tries what a subverted decoder would and says what it got.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What a probe child managed: `"ok"`, or the error it got.
#[derive(Debug, Serialize, Deserialize)]
pub struct Probe {
    /// What confinement the child had.
    pub confinement: String,
    /// Reading its own input file.
    pub input: String,
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

/// The probe child: what a subverted decoder would try, confined as `confinement` says.
pub fn probe(
    confinement: &str,
    input: &Path,
    out_dir: &Path,
    open: &[PathBuf],
    connect: Option<SocketAddr>,
) -> Probe {
    // First, before this function opens anything itself.
    let fds = (0..1024)
        // SAFETY: F_GETFD only reads the descriptor's flags.
        .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
        .collect();
    let written = out_dir.join("probe");
    Probe {
        confinement: confinement.to_owned(),
        input: outcome(std::fs::read(input)),
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
        parent_environ: outcome(std::fs::read(format!(
            "/proc/{}/environ",
            std::os::unix::process::parent_id()
        ))),
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
        env: std::env::vars_os()
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect(),
        fds,
    }
}
