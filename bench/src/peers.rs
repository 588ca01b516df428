//! The tools satchel is compared with, found on PATH (and the pyvips peer, set up in a virtual
//! environment by the bench's `pyvips` module). One that is not installed is reported as missing in
//! every row that needed it, never skipped.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct Peer {
    pub name: &'static str,
    pub path: Option<PathBuf>,
    pub version: Option<String>,
    /// Why a peer that is not on PATH is missing, when there is more to say.
    pub note: Option<String>,
}

impl Peer {
    pub fn find(name: &'static str) -> Self {
        let path = on_path(name);
        let version = path.as_deref().and_then(|p| version_of(name, p));
        Peer {
            name,
            path,
            version,
            note: None,
        }
    }

    /// A peer that could not be had, and why.
    pub fn missing(name: &'static str, why: impl Into<String>) -> Self {
        Peer {
            name,
            path: None,
            version: None,
            note: Some(why.into()),
        }
    }

    pub fn missing_note(&self) -> String {
        self.note
            .clone()
            .unwrap_or_else(|| format!("{} is not installed (no executable on PATH)", self.name))
    }
}

pub struct Peers {
    pub vips: Peer,
    pub magick: Peer,
    pub ffmpeg: Peer,
    /// The photos workload's persistent-libvips peer: set up only when that workload runs.
    pub pyvips: Option<Peer>,
}

impl Peers {
    pub fn find() -> Self {
        Peers {
            vips: Peer::find("vipsthumbnail"),
            magick: Peer::find("convert"),
            ffmpeg: Peer::find("ffmpeg"),
            pyvips: None,
        }
    }

    pub fn all(&self) -> Vec<&Peer> {
        [&self.vips, &self.magick, &self.ffmpeg]
            .into_iter()
            .chain(self.pyvips.as_ref())
            .collect()
    }
}

/// The first executable of that name on PATH that is a native program. Script shims (some
/// machines put one in front of ImageMagick) are passed over: their interpreter's start-up
/// would be billed to the peer.
fn on_path(name: &str) -> Option<PathBuf> {
    on_path_where(name, is_native_executable)
}

/// The first executable file of that name on PATH, script or not (an interpreter, such as a
/// `python3` shim, is used only to make the pyvips environment, never timed).
pub fn any_on_path(name: &str) -> Option<PathBuf> {
    on_path_where(name, |p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn on_path_where(name: &str, fits: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fits(p))
}

fn is_native_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|_| &magic == b"\x7fELF")
}

fn version_of(name: &str, path: &Path) -> Option<String> {
    let flag = match name {
        "vipsthumbnail" => "--vips-version",
        "ffmpeg" => "-version",
        _ => "-version",
    };
    let out = Command::new(path).arg(flag).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?.trim();
    Some(line.to_owned()).filter(|l| !l.is_empty())
}
