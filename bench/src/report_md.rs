//! report.md: the tables a person reads.

use super::report::{Better, Comparison, Report, Row, Status, Workload};
use std::fmt::Write;
use std::path::Path;

pub fn write(report: &Report, dir: &Path, charts: &[String]) -> anyhow::Result<()> {
    std::fs::write(dir.join("report.md"), render(report, charts))?;
    Ok(())
}

pub fn render(r: &Report, charts: &[String]) -> String {
    let mut s = String::new();
    let m = &r.machine;
    let _ = writeln!(s, "# satchel bench: {} suite\n", r.suite);
    let _ =
        writeln!(
        s,
        "Started {}, took {:.0} s, seed {}. Target: {} `{}` (storage {}, catalog {}, queue {}).\n",
        r.started_at, r.wall_seconds, r.seed, r.target.mode, r.target.url, r.target.storage,
        r.target.catalog, r.target.queue
    );
    let _ = writeln!(
        s,
        "Machine: {}, {} logical CPUs, {} GiB, {}, kernel {}; load average {} at start, {} at end. \
         satchel build: **{}**.\n",
        m.cpu,
        m.logical_cpus,
        m.memory_gib,
        m.os,
        m.kernel,
        opt(m.load_at_start),
        opt(m.load_at_end),
        m.satchel_build
    );
    let _ = writeln!(s, "| tool | status | version |\n|---|---|---|");
    for (name, version) in &r.versions {
        let status = r
            .peers
            .iter()
            .find(|p| &p.name == name)
            .map_or("under test", |_| "found");
        let _ = writeln!(s, "| {name} | {status} | {version} |");
    }
    for p in r.peers.iter().filter(|p| p.status == Status::Missing) {
        let why = p.note.as_deref().unwrap_or("not installed");
        let _ = writeln!(s, "| {} | **missing** | {why} |", p.name);
    }
    s.push_str(
        "\nRatios are satchel ÷ peer. For times and memory below 1 means satchel is better; \
         for throughput and requests/s above 1 does.\n",
    );

    let comparisons: Vec<(&Workload, &Comparison)> = r
        .workloads
        .iter()
        .flat_map(|w| w.comparisons.iter().map(move |c| (w, c)))
        .collect();
    if !comparisons.is_empty() {
        s.push_str("\n## Side by side\n\n| workload | satchel | peer | metric | satchel | peer | ratio |\n|---|---|---|---|---|---|---|\n");
        for (w, c) in comparisons {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                w.id,
                c.satchel,
                c.peer,
                match &c.peer_metric {
                    Some(pm) => format!("{} vs {}", label(&c.metric), label(pm)),
                    None => label(&c.metric),
                },
                opt(c.satchel_value),
                opt(c.peer_value),
                ratio(c)
            );
        }
    }

    for w in &r.workloads {
        let _ = writeln!(s, "\n## {} (`{}`)\n", w.title, w.id);
        if let Some(e) = &w.error {
            let _ = writeln!(s, "**Failed:** {e}\n");
        }
        if !w.method.is_empty() {
            let _ = writeln!(s, "{}\n", w.method);
        }
        for input in &w.inputs {
            let _ = writeln!(s, "- input: {input}");
        }
        if !w.inputs.is_empty() {
            s.push('\n');
        }
        if !w.rows.is_empty() {
            table(&mut s, &w.rows);
        }
        let commands: Vec<&Row> = w.rows.iter().filter(|r| r.command.is_some()).collect();
        if !commands.is_empty() {
            s.push_str("\nCommands:\n");
            for row in commands {
                let _ = writeln!(
                    s,
                    "- {}: `{}`",
                    row.subject,
                    row.command.as_deref().unwrap_or("")
                );
            }
        }
        for note in &w.notes {
            let _ = writeln!(s, "\nNote: {note}");
        }
    }
    if !charts.is_empty() {
        s.push_str("\n## Charts\n\n");
        for c in charts {
            let _ = writeln!(s, "![{c}]({c})");
        }
    }
    s
}

/// One table per workload; its columns are every figure any of its rows has.
fn table(s: &mut String, rows: &[Row]) {
    let mut keys: Vec<&str> = Vec::new();
    for row in rows {
        for (k, _) in &row.figures.0 {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    let _ = write!(s, "| | role | status |");
    for k in &keys {
        let _ = write!(s, " {} |", label(k));
    }
    let _ = write!(s, "\n|---|---|---|");
    for _ in &keys {
        s.push_str("---:|");
    }
    s.push('\n');
    for row in rows {
        let status = match (&row.status, &row.note) {
            (Status::Measured, _) => "measured".to_owned(),
            (st, Some(note)) => format!("**{}**: {note}", st.label()),
            (st, None) => st.label().to_owned(),
        };
        let _ = write!(s, "| {} | {:?} | {} |", row.subject, row.role, status);
        for k in &keys {
            let _ = write!(s, " {} |", opt(row.figures.get(k)));
        }
        s.push('\n');
    }
}

/// `wall_median_s` → `wall median (s)`.
fn label(key: &str) -> String {
    const UNITS: [(&str, &str); 7] = [
        ("_pct", "%"),
        ("_mib_s", "MiB/s"),
        ("_per_s", "/s"),
        ("_mib", "MiB"),
        ("_ms", "ms"),
        ("_s", "s"),
        ("_count", ""),
    ];
    for (suffix, unit) in UNITS {
        if let Some(name) = key.strip_suffix(suffix) {
            return format!("{} ({unit})", name.replace('_', " "));
        }
    }
    key.replace('_', " ")
}

fn opt(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e9 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.3}"),
    }
}

fn ratio(c: &Comparison) -> String {
    match c.ratio {
        Some(r) => {
            let good = match c.better {
                Better::Lower => r < 1.0,
                Better::Higher => r > 1.0,
            };
            format!("{r:.2}{}", if good { " ✓" } else { "" })
        }
        None => format!(
            "– ({}{})",
            c.status.label(),
            c.note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        ),
    }
}
