//! A bounded mutation fuzz of every decoder entry point, on stable Rust: each fixture of each
//! kind, bit-flipped, truncated, overwritten and spliced by a seeded generator, goes through
//! `satchel transform` (the worker's child, as a job runs it) with a memory ceiling. Every run
//! must end within its budget with a report: done, or failed with one of the workers' codes.
//! A Rust panic, a report that does not parse or a hang fails the test; a C decoder killed by a
//! signal is what the child exists for, and is counted, not failed.
//!
//! `SATCHEL_MUTATION_SECONDS` (default 20) bounds each kind's run; `SATCHEL_MUTATION_SEED`
//! replays one. A failing input is kept and its path printed.

use crate::helpers::fixture;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// xorshift64*: reproducible from its seed, good enough to pick bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to four random edits of `input`.
fn mutate(input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len().max(1);
        match rng.below(6) {
            // Flip bits in a few bytes, mostly near the start, where the headers are.
            0 | 1 => {
                for _ in 0..1 + rng.below(8) {
                    let span = if rng.below(2) == 0 { len.min(512) } else { len };
                    let at = rng.below(span);
                    if let Some(b) = out.get_mut(at) {
                        *b ^= 1 << rng.below(8);
                    }
                }
            }
            // Truncate.
            2 => out.truncate(rng.below(len)),
            // Overwrite a run with an extreme value (lengths and counts become huge or zero).
            3 => {
                let at = rng.below(len);
                let value = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
                let end = (at + 1 + rng.below(8)).min(out.len());
                out.get_mut(at..end)
                    .into_iter()
                    .flatten()
                    .for_each(|b| *b = value);
            }
            // Duplicate a chunk somewhere else.
            4 => {
                let from = rng.below(len);
                let end = (from + rng.below(4096)).min(out.len());
                let chunk = out.get(from..end).unwrap_or_default().to_vec();
                let at = rng.below(len).min(out.len());
                out.splice(at..at, chunk);
            }
            // Cut a chunk out.
            _ => {
                let from = rng.below(len).min(out.len());
                let end = (from + rng.below(4096)).min(out.len());
                out.drain(from..end);
            }
        }
    }
    out
}

#[derive(Default, Debug)]
struct Tally {
    runs: u32,
    done: u32,
    failed: u32,
    signalled: u32,
}

/// Mutates `fixtures` of `kind` for `budget`, running each result through `satchel transform`.
fn fuzz(kind: &str, fixtures: &[&str], budget: Duration) -> Tally {
    let seed: u64 = std::env::var("SATCHEL_MUTATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let seeds: Vec<Vec<u8>> = fixtures.iter().map(|f| fixture(f)).collect();
    let dir = tempfile::tempdir().unwrap();
    let codes: Vec<&str> = satchel_workers::CODES.iter().map(|c| c.code).collect();
    let mut tally = Tally::default();
    let started = Instant::now();
    let mut case = 0u64;
    while started.elapsed() < budget {
        case += 1;
        let mut rng = Rng(seed ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let input = mutate(&seeds[rng.below(seeds.len())], &mut rng);
        let file = dir.path().join("input");
        let out = dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir(&out).unwrap();
        std::fs::write(&file, &input).unwrap();
        let replay = format!("SATCHEL_MUTATION_SEED={seed}, case {case}");
        let keep = |why: &str| -> String {
            let kept = std::env::temp_dir().join(format!("satchel-mutation-{kind}-{seed}-{case}"));
            std::fs::write(&kept, &input).unwrap();
            format!("{kind}: {why} ({replay}; input kept in {})", kept.display())
        };

        let mut command = Command::new(env!("CARGO_BIN_EXE_satchel"));
        command
            .args(["transform", "--kind", kind, "--out"])
            .arg(&out)
            .arg(&file)
            .env("SATCHEL_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only setrlimit runs between fork and exec. The ceiling a worker gives
        // its children by default.
        unsafe {
            command.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 2 << 30,
                    rlim_max: 2 << 30,
                };
                match libc::setrlimit(libc::RLIMIT_DATA, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                }
            });
        }
        let mut child = command.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{}", keep("the transform ran for over 60 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        tally.runs += 1;
        if let Some(signal) = status.signal() {
            // A C decoder's crash (or an abort on the memory ceiling): contained in the child.
            eprintln!("{kind}: the transform died of signal {signal} ({replay})");
            tally.signalled += 1;
            continue;
        }
        assert!(
            status.success(),
            "{}: {stderr}",
            keep(&format!("the transform exited with {status}"))
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{}", keep(&format!("no report ({e})"))));
        match report["outcome"].as_str() {
            Some("done") => tally.done += 1,
            Some("failed") => {
                let code = report["code"].as_str().unwrap_or_default();
                assert!(
                    codes.contains(&code),
                    "{}",
                    keep(&format!("an unknown failure code: {report}"))
                );
                tally.failed += 1;
            }
            _ => panic!(
                "{}",
                keep(&format!("a report without an outcome: {report}"))
            ),
        }
    }
    eprintln!("{kind}: {tally:?} in {:?} (seed {seed})", started.elapsed());
    tally
}

fn budget() -> Duration {
    let seconds = std::env::var("SATCHEL_MUTATION_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(seconds)
}

fn check(kind: &str, fixtures: &[&str]) {
    assert!(Path::new(env!("CARGO_BIN_EXE_satchel")).exists());
    let tally = fuzz(kind, fixtures, budget());
    // Mutants mostly fail cleanly; a run that only ever crashed would show a broken harness.
    assert!(tally.runs >= 5, "{tally:?}");
    assert!(tally.done + tally.failed > 0, "{tally:?}");
}

#[test]
fn mutated_images_end_in_a_report() {
    check(
        "image",
        &[
            "photo.jpg",
            "photo.png",
            "photo.webp",
            "anim.gif",
            "cmyk.jpg",
        ],
    );
}

#[test]
fn mutated_heic_and_avif_end_in_a_report() {
    // libheif (C++, with libde265, dav1d and aom under it) behind the same child and sandbox.
    check(
        "image",
        &[
            "photo.heic",
            "rotated.heic",
            "photo.avif",
            "photo-10bit.avif",
        ],
    );
}

#[test]
fn mutated_audio_ends_in_a_report() {
    check(
        "audio",
        &[
            "voice.mp3",
            "voice.ogg",
            "voice.m4a",
            "voice.flac",
            "voice.wav",
            "voice.opus",
        ],
    );
}

#[test]
fn mutated_video_ends_in_a_report() {
    check("video", &["clip.mp4", "clip.webm", "clip-noaudio.mp4"]);
}
