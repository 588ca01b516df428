//! Secrets the service makes for itself when none are configured, kept in the data directory
//! with mode 0600 so that a restart keeps them.

use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Reads the secret in `data_dir/name`, creating it with 32 random bytes (hex) if missing.
/// Returns the secret and whether it was created now.
pub fn load_or_create(data_dir: &Path, name: &str) -> std::io::Result<(String, PathBuf, bool)> {
    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok((s.trim().to_owned(), path, false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok((secret, path, true))
}

/// [`load_or_create`], for a secret that stands in for one not configured: when `warning` is
/// given, logs it with the file that holds the secret (and whether it was made now).
pub fn generated(data_dir: &Path, name: &str, warning: Option<&str>) -> std::io::Result<String> {
    let (secret, path, created) = load_or_create(data_dir, name)?;
    if let Some(warning) = warning {
        tracing::warn!(path = %path.display(), created, "{warning}");
    }
    Ok(secret)
}

/// Secrets shared by every node must be at least 32 bytes as given (not decoded): an empty or
/// short one would make links, webhook signatures or bucket names guessable.
pub fn check(key: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(v) if v.len() < MIN_SECRET_BYTES => Err(format!(
            "{} must be at least {MIN_SECRET_BYTES} bytes, not {}; {HOW}",
            named(key),
            v.len()
        )),
        _ => Ok(()),
    }
}

/// The secrets in the file that `key` names: one a line, trimmed, blank lines skipped; at
/// least one, each checked as [`check`] does.
pub fn read_file(key: &str, path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read {}: {e}", named(key), path.display()))?;
    let secrets: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if secrets.is_empty() {
        return Err(format!(
            "{}: {} holds no secret",
            named(key),
            path.display()
        ));
    }
    if let Some(short) = secrets.iter().find(|s| s.len() < MIN_SECRET_BYTES) {
        return Err(format!(
            "{}: each secret in {} must be at least {MIN_SECRET_BYTES} bytes, not {}; {HOW}",
            named(key),
            path.display(),
            short.len()
        ));
    }
    Ok(secrets)
}

/// `key (SATCHEL_KEY)`, as errors name a setting.
fn named(key: &str) -> String {
    format!("{key} (SATCHEL_{})", key.to_uppercase())
}

const MIN_SECRET_BYTES: usize = 32;
const HOW: &str = "e.g. `openssl rand -hex 32`";
