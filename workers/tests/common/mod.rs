//! What the workers' test files share: where the fixtures are, and hostile variants of one.
// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A file of the repository's `fixtures/`, from either workers crate.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("fixtures"))
        .find(|dir| dir.is_dir())
        .expect("the repository's fixtures/")
        .join(name)
}

/// `src` cut at each of `cuts` (clamped to its length), and with one byte flipped at every
/// `src.len() / flips + 1`-th position from `from` on.
pub fn cut_and_flipped(src: &[u8], cuts: &[usize], from: usize, flips: usize) -> Vec<Vec<u8>> {
    let mut cases: Vec<Vec<u8>> = cuts
        .iter()
        .map(|&cut| src[..cut.min(src.len())].to_vec())
        .collect();
    for at in (from..src.len()).step_by(src.len() / flips + 1) {
        let mut bad = src.to_vec();
        bad[at] ^= 0x5a;
        cases.push(bad);
    }
    cases
}
