//! What a run found, in one value that report.md, report.json and the charts are made from.

use super::machine::Machine;
use super::options::Plan;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Report {
    pub suite: &'static str,
    pub started_at: String,
    pub wall_seconds: f64,
    pub seed: u64,
    pub target: TargetInfo,
    pub machine: Machine,
    /// satchel's and every peer's version, as each tool reports it.
    pub versions: BTreeMap<String, String>,
    pub peers: Vec<PeerInfo>,
    pub plan: Plan,
    pub workloads: Vec<Workload>,
}

#[derive(Debug, Serialize)]
pub struct TargetInfo {
    /// `embedded` (started by the bench) or `remote` (`--target`).
    pub mode: &'static str,
    pub url: String,
    /// Backends as the target's `/readyz` names them.
    pub storage: String,
    pub catalog: String,
    pub queue: String,
}

#[derive(Debug, Serialize)]
pub struct PeerInfo {
    pub name: String,
    pub status: Status,
    pub path: Option<String>,
    pub version: Option<String>,
    /// Why a missing peer is missing.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Measured,
    /// A peer tool that is not installed.
    Missing,
    /// The comparison does not apply to this deployment (e.g. no S3 store).
    NotApplicable,
    Failed,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Measured => "measured",
            Status::Missing => "missing",
            Status::NotApplicable => "not applicable",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Satchel,
    Peer,
    /// A floor to read satchel's figure against, not a competing tool.
    Reference,
    /// Peak memory of a process taking part.
    Process,
}

/// Figures in the order they were added; keys end in their unit (`_s`, `_ms`, `_mib`,
/// `_mib_s`, `_per_s`) so that report.json needs no schema to be read.
#[derive(Debug, Default, Clone)]
pub struct Figures(pub Vec<(String, f64)>);

impl Figures {
    pub fn set(&mut self, key: &str, value: f64) -> &mut Self {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), value));
        self
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl Serialize for Figures {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub subject: String,
    pub role: Role,
    pub status: Status,
    /// The exact command line, for rows that ran one.
    pub command: Option<String>,
    /// Why a row is missing, not applicable or failed.
    pub note: Option<String>,
    pub figures: Figures,
}

impl Row {
    pub fn measured(subject: impl Into<String>, role: Role, figures: Figures) -> Self {
        Row {
            subject: subject.into(),
            role,
            status: Status::Measured,
            command: None,
            note: None,
            figures,
        }
    }

    pub fn unmeasured(
        subject: impl Into<String>,
        role: Role,
        status: Status,
        note: impl Into<String>,
    ) -> Self {
        Row {
            subject: subject.into(),
            role,
            status,
            command: None,
            note: Some(note.into()),
            figures: Figures::default(),
        }
    }

    pub fn with_command(mut self, command: Option<String>) -> Self {
        self.command = command;
        self
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

/// satchel's figure against a peer's from the same run. `ratio` is satchel ÷ peer; it is
/// null, never left out, when the peer could not be measured.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metric: String,
    /// The peer's figure when it is named differently from satchel's (`photos_per_s`
    /// against satchel's `jobs_per_s`); absent when it is `metric` too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_metric: Option<String>,
    pub satchel: String,
    pub peer: String,
    pub satchel_value: Option<f64>,
    pub peer_value: Option<f64>,
    pub ratio: Option<f64>,
    pub better: Better,
    pub status: Status,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Workload {
    pub id: &'static str,
    pub title: String,
    /// How the figures were taken: in which process, how many runs, what is included.
    pub method: String,
    pub inputs: Vec<String>,
    pub status: Status,
    pub error: Option<String>,
    pub rows: Vec<Row>,
    pub comparisons: Vec<Comparison>,
    pub notes: Vec<String>,
    /// Raw latencies in milliseconds, for the charts and for anyone re-analysing.
    pub samples_ms: BTreeMap<String, Vec<f64>>,
}

impl Workload {
    pub fn new(id: &'static str, title: impl Into<String>) -> Self {
        Workload {
            id,
            title: title.into(),
            method: String::new(),
            inputs: Vec::new(),
            status: Status::Measured,
            error: None,
            rows: Vec::new(),
            comparisons: Vec::new(),
            notes: Vec::new(),
            samples_ms: BTreeMap::new(),
        }
    }

    pub fn failed(id: &'static str, title: impl Into<String>, error: &anyhow::Error) -> Self {
        let mut w = Workload::new(id, title);
        w.status = Status::Failed;
        w.error = Some(format!("{error:#}"));
        w
    }

    /// Compares `metric` of the satchel row `satchel` with that of the row `peer`; a peer
    /// row that was not measured carries its status and note into the comparison.
    pub fn compare(&mut self, metric: &str, satchel: &str, peer: &str, better: Better) {
        self.compare_figures(metric, metric, satchel, peer, better);
    }

    /// Compares satchel's `metric` with the peer's `peer_metric`, a figure of the same unit
    /// under another name.
    pub fn compare_figures(
        &mut self,
        metric: &str,
        peer_metric: &str,
        satchel: &str,
        peer: &str,
        better: Better,
    ) {
        let find = |name: &str| self.rows.iter().find(|r| r.subject == name);
        let (s, p) = (find(satchel), find(peer));
        let satchel_value = s.and_then(|r| r.figures.get(metric));
        let peer_value = p.and_then(|r| r.figures.get(peer_metric));
        let ratio = match (satchel_value, peer_value) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let (status, note) = match (s, p) {
            _ if ratio.is_some() => (Status::Measured, None),
            (Some(s), _) if s.status != Status::Measured => (s.status, s.note.clone()),
            (_, Some(p)) if p.status != Status::Measured => (p.status, p.note.clone()),
            _ => (Status::Failed, Some("a figure is missing".into())),
        };
        self.comparisons.push(Comparison {
            metric: metric.into(),
            peer_metric: (peer_metric != metric).then(|| peer_metric.into()),
            satchel: satchel.into(),
            peer: peer.into(),
            satchel_value,
            peer_value,
            ratio,
            better,
            status,
            note,
        });
    }
}

pub const MIB: f64 = 1024.0 * 1024.0;
