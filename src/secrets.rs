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
