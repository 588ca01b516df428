//! `satchel bench` through its public CLI (the `satchel` binary, which runs the
//! `satchel-bench` beside it): the smoke suite runs every workload for real on tiny inputs
//! against an embedded satchel, with vipsthumbnail hidden from PATH so that a missing peer
//! must show up as missing.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A PATH holding only ffmpeg and ImageMagick's convert (the real binaries, not shims).
fn path_without_vips(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["ffmpeg", "convert"] {
        let found = ["/usr/bin", "/usr/local/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| {
                std::fs::read(p).is_ok_and(|b| b.starts_with(b"\x7fELF"))
                    || std::fs::canonicalize(p)
                        .and_then(std::fs::read)
                        .is_ok_and(|b| b.starts_with(b"\x7fELF"))
            })
            .unwrap_or_else(|| {
                panic!("{tool} is needed by this test (scripts/install-deps.sh installs it)")
            });
        std::os::unix::fs::symlink(std::fs::canonicalize(found).unwrap(), bin.join(tool)).unwrap();
    }
    bin
}

/// The `satchel` binary in the directory of the `satchel-bench` under test. A workspace test
/// run (`cargo nextest run --workspace`, as CI does) has just built it there; when only this
/// crate is tested and it is missing, it is built here, since cargo builds a dependency's
/// library for this crate's tests, not its binary. (Building it here when it exists would
/// resolve features differently from the workspace build and rebuild half the dependencies:
/// ten minutes on 2 cores.)
fn satchel_beside_the_bench() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_satchel-bench"))
        .parent()
        .unwrap();
    if dir.join("satchel").is_file() {
        return dir.join("satchel");
    }
    let profile = match dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "satchel", "--bin", "satchel"])
        .args(["--profile", profile])
        .env("CARGO_TARGET_DIR", dir.parent().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p satchel failed");
    dir.join("satchel")
}

fn figure(row: &Value, key: &str) -> f64 {
    row["figures"][key]
        .as_f64()
        .unwrap_or_else(|| panic!("{} has no figure {key}: {row}", row["subject"]))
}

fn row<'a>(workload: &'a Value, starts_with: &str) -> &'a Value {
    workload["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject"].as_str().unwrap().starts_with(starts_with))
        .unwrap_or_else(|| panic!("no row {starts_with} in {}", workload["id"]))
}

/// Runs `satchel bench ARGS --out DIR/out` with `SATCHEL_*` cleared and PATH set to `path`
/// (when given), within `limit`; returns report.md and report.json.
fn run_bench(dir: &Path, args: &[&str], path: Option<&Path>, limit: Duration) -> (String, Value) {
    let out = dir.join("out");
    let mut command = Command::new(satchel_beside_the_bench());
    command.arg("bench").args(args).arg("--out").arg(&out);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SATCHEL_")) {
        command.env_remove(key);
    }
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("satchel bench {args:?} took over {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap();
    assert!(status.success(), "satchel bench failed: {stderr}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let report =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    (md, report)
}

/// The photos workload's rows for both photos: satchel's jobs/s, the transform alone and the
/// per-job overhead as real numbers; returns the pyvips rows for the caller to judge.
fn check_photos(photos: &Value) -> Vec<Value> {
    assert_eq!(
        photos["status"], "measured",
        "photos failed: {}",
        photos["error"]
    );
    let mut peers = Vec::new();
    for size in ["640×480", "1600×1200"] {
        let satchel = row(photos, &format!("satchel, {size}: upload → ready"));
        assert_eq!(
            figure(satchel, "jobs"),
            if size == "640×480" { 16.0 } else { 8.0 }
        );
        assert_eq!(figure(satchel, "errors"), 0.0);
        for key in [
            "jobs_per_s",
            "ready_p50_ms",
            "cpu_per_job_ms",
            "polls_per_job",
        ] {
            assert!(figure(satchel, key) > 0.0, "{size} {key}");
        }
        let alone = row(photos, &format!("satchel transform alone, {size}"));
        assert_eq!(alone["role"], "reference");
        assert!(figure(alone, "cpu_per_job_ms") > 0.0);
        // The whole job costs more than its transform: the overhead is a real, finite figure.
        let overhead = row(photos, &format!("satchel per-job overhead, {size}"));
        assert!(figure(overhead, "overhead_cpu_ms").is_finite());
        assert!(figure(overhead, "overhead_pct").is_finite());
        assert!(figure(overhead, "of_which_polling_ms") >= 0.0);
        let peer = row(photos, &format!("pyvips, {size}")).clone();
        let ratio = photos["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metric"] == "jobs_per_s" && c["peer"] == peer["subject"])
            .unwrap_or_else(|| panic!("no jobs/s comparison for {size}"));
        assert_eq!(ratio["peer_metric"], "photos_per_s");
        if peer["status"] == "measured" {
            assert!(figure(&peer, "photos_per_s") > 0.0);
            assert!(figure(&peer, "cpu_per_photo_ms") > 0.0);
            assert!(ratio["ratio"].as_f64().unwrap() > 0.0, "{ratio}");
        } else {
            // Skipped: missing, with why, and no number anywhere in its place.
            assert_eq!(peer["status"], "missing", "{peer}");
            assert!(peer["note"].is_string());
            assert!(peer["figures"].as_object().unwrap().is_empty(), "{peer}");
            assert!(ratio["ratio"].is_null(), "{ratio}");
            assert_eq!(ratio["status"], "missing");
        }
        peers.push(peer);
    }
    peers
}

#[test]
fn the_smoke_suite_writes_a_full_report_and_names_missing_peers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = path_without_vips(dir.path());
    let (md, report) = run_bench(
        dir.path(),
        &["--suite", "smoke"],
        Some(&path),
        Duration::from_secs(240),
    );
    assert!(md.contains("## Side by side"), "{md}");
    assert!(md.contains("| vipsthumbnail | **missing** |"), "{md}");
    // No python3 on this PATH: the pyvips environment cannot be made, and says so.
    assert!(
        md.contains("| pyvips | **missing** | python3 is not installed"),
        "{md}"
    );

    assert_eq!(report["suite"], "smoke");
    assert_eq!(report["target"]["mode"], "embedded");
    assert!(report["machine"]["logical_cpus"].as_u64().unwrap() > 0);
    assert!(report["versions"]["satchel"].is_string());
    assert!(report["versions"]["ffmpeg"].is_string());
    let peer = |name: &str| {
        report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(peer("vipsthumbnail")["status"], "missing");
    assert_eq!(peer("ffmpeg")["status"], "measured");

    let workloads = report["workloads"].as_array().unwrap();
    let ids: Vec<&str> = workloads
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["image", "voice", "video", "upload", "load", "links", "photos"]
    );
    for w in workloads {
        assert_eq!(
            w["status"], "measured",
            "workload {} failed: {}",
            w["id"], w["error"]
        );
        for c in w["comparisons"].as_array().unwrap() {
            assert!(c.get("ratio").is_some(), "a comparison without ratio: {c}");
        }
    }
    let by_id = |id: &str| workloads.iter().find(|w| w["id"] == id).unwrap();

    // Transforms: satchel and every installed peer measured, ratios positive; vips missing.
    let image = by_id("image");
    let satchel = row(image, "satchel process");
    assert!(figure(satchel, "wall_median_s") > 0.0);
    assert!(figure(satchel, "peak_rss_mib") > 0.0);
    assert!(figure(row(image, "satchel via HTTP API"), "wall_median_s") > 0.0);
    let vips = row(image, "vipsthumbnail -s 320");
    assert_eq!(vips["status"], "missing");
    assert!(vips["note"].as_str().unwrap().contains("not installed"));
    for c in image["comparisons"].as_array().unwrap() {
        let peer = c["peer"].as_str().unwrap();
        if peer.starts_with("vipsthumbnail") {
            assert!(c["ratio"].is_null());
            assert_eq!(c["status"], "missing");
        } else {
            assert!(c["ratio"].as_f64().unwrap() > 0.0, "{c}");
        }
    }
    for id in ["voice", "video"] {
        let w = by_id(id);
        let wall = w["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["metric"] == "wall_median_s")
            .unwrap();
        assert!(wall["ratio"].as_f64().unwrap() > 0.0, "{id}: {wall}");
        assert!(figure(row(w, "ffmpeg"), "wall_median_s") > 0.0);
    }

    // Upload: satchel's throughput at 1 and 16 streams; no S3 here, so that peer does not apply.
    let upload = by_id("upload");
    assert!(figure(row(upload, "satchel, 1 stream"), "throughput_mib_s") > 0.0);
    assert_eq!(figure(row(upload, "satchel, 16 stream"), "uploads"), 16.0);
    assert_eq!(row(upload, "direct S3 PUT, 16")["status"], "not_applicable");

    // Load: every upload of the mix done without error, processed ones ready.
    let load = by_id("load");
    let all = row(load, "all uploads");
    assert_eq!(figure(all, "uploads"), 8.0);
    assert_eq!(figure(all, "errors"), 0.0);
    for key in [
        "upload_p50_ms",
        "upload_p99_ms",
        "ready_p50_ms",
        "ready_p99_ms",
        "jobs_per_s",
    ] {
        assert!(figure(all, key) > 0.0, "{key}");
    }
    assert!(figure(row(load, "process: satchel serve"), "peak_rss_mib") > 0.0);
    // Jobs run in `satchel transform` children of the server; their memory is theirs.
    let children = row(load, "process: satchel transform");
    assert!(figure(children, "processes") >= 1.0);
    assert!(figure(children, "peak_rss_mib") > 0.0);
    assert_eq!(
        load["samples_ms"]["time_to_ready"]
            .as_array()
            .unwrap()
            .len(),
        8
    );

    let links = by_id("links");
    let issued = row(links, "satchel POST");
    assert!(figure(issued, "requests_per_s") > 0.0);
    assert_eq!(figure(issued, "errors"), 0.0);

    assert_eq!(peer("pyvips")["status"], "missing");
    for pyvips in check_photos(by_id("photos")) {
        assert_eq!(pyvips["status"], "missing");
        assert!(pyvips["note"].as_str().unwrap().contains("python3"));
    }

    let svgs: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "svg"))
        .collect();
    assert!(svgs.len() >= 3, "charts: {svgs:?}");
    for svg in svgs {
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    }
}

/// The photos workload alone, with the machine's PATH: the bench makes the pyvips
/// environment (once, kept in the target directory) and measures the peer beside satchel.
/// Where it cannot be made (no network to PyPI) the peer must show as missing, not a number.
#[test]
fn the_photos_workload_puts_satchel_beside_persistent_libvips() {
    let dir = tempfile::tempdir().unwrap();
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pyvips-venv");
    let (md, report) = run_bench(
        dir.path(),
        &[
            "--suite",
            "smoke",
            "--only",
            "photos",
            "--pyvips-venv",
            venv.to_str().unwrap(),
        ],
        None,
        Duration::from_secs(300),
    );
    let workloads = report["workloads"].as_array().unwrap();
    assert_eq!(workloads.len(), 1);
    let peers = check_photos(&workloads[0]);
    let pyvips = report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pyvips")
        .unwrap();
    if pyvips["status"] == "measured" {
        assert!(pyvips["version"].as_str().unwrap().contains("libvips 8.18"));
        assert!(peers.iter().all(|p| p["status"] == "measured"), "{peers:?}");
        assert!(md.contains("jobs (/s) vs photos (/s)"), "{md}");
    } else {
        eprintln!("pyvips could not be set up here: {}", pyvips["note"]);
        assert!(md.contains("| pyvips | **missing** |"), "{md}");
    }
}

/// `--preset` configures the satchel the bench starts as well as its own transforms: with a
/// preset that refuses every photo (`max_pixels = 1000`), the job through the HTTP API fails
/// with `too_many_pixels` too, where the built-in preset would have let it through.
#[test]
fn the_bench_serves_with_the_preset_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let default = satchel_workers::preset::DEFAULT_TOML;
    let line = "max_pixels = 100_000_000";
    assert!(default.contains(line), "the built-in preset changed");
    let preset = dir.path().join("tiny.toml");
    std::fs::write(&preset, default.replacen(line, "max_pixels = 1_000", 1)).unwrap();
    let (_, report) = run_bench(
        dir.path(),
        &[
            "--suite",
            "smoke",
            "--only",
            "image",
            "--preset",
            preset.to_str().unwrap(),
        ],
        None,
        Duration::from_secs(300),
    );
    let notes = &report["workloads"][0]["notes"];
    assert!(
        notes.as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("through the API: failed")
            && n.as_str().unwrap().contains("too_many_pixels")),
        "{notes}"
    );
}
