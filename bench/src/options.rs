//! The command line of `satchel bench` and what each suite size means in counts and sizes.

use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// How big a run: `smoke` (seconds, tiny inputs: checks the suite itself), `quick`
    /// (a few minutes) or `full`.
    #[arg(long, value_enum, default_value = "quick")]
    pub suite: Suite,
    /// A running deployment to drive, e.g. `https://media.example.com`. Without it satchel is
    /// started embedded on a free port with a fresh data directory.
    #[arg(long, requires = "token")]
    pub target: Option<String>,
    /// Bearer token of the deployment given with `--target`.
    #[arg(long)]
    pub token: Option<String>,
    /// Where report.md, report.json and the SVG charts go.
    #[arg(long)]
    pub out: PathBuf,
    /// Where generated inputs are kept between runs (default: OUT/inputs).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Seed of every generated input: the same seed gives the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The preset satchel and the peers are configured from (default: the built-in one).
    #[arg(long)]
    pub preset: Option<PathBuf>,
    /// Run only these workloads.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub only: Vec<WorkloadId>,
    /// The Python virtual environment of the photos workload's peer (pyvips with
    /// pyvips-binary). Used as it is when it imports pyvips; otherwise made there with
    /// `python3 -m venv` and pip (default: CACHE/pyvips-venv).
    #[arg(long)]
    pub pyvips_venv: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    Smoke,
    Quick,
    Full,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadId {
    Image,
    Voice,
    Video,
    Upload,
    Load,
    Links,
    Photos,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::Smoke => "smoke",
            Suite::Quick => "quick",
            Suite::Full => "full",
        }
    }

    pub fn plan(self) -> Plan {
        match self {
            Suite::Smoke => Plan {
                photo: (640, 427),
                transform_runs: 1,
                api_runs: 1,
                voice_seconds: 2,
                video: (1440, 810, 1),
                upload_bytes: 1 << 20,
                upload_single_runs: 2,
                upload_parallel_rounds: 1,
                load_clients: 2,
                load_uploads_per_client: 4,
                mix_photo: (320, 240),
                mix_voice_seconds: 1,
                mix_video: (320, 240, 1),
                mix_file_bytes: 64 << 10,
                links_seconds: 1.0,
                links_concurrency: 4,
                photos_sizes: PHOTO_SIZES,
                photos_clients: 8,
                photos_jobs: [16, 8],
                photos_transform_runs: 3,
                photos_peer_seconds: 1.0,
            },
            Suite::Quick => Plan {
                photo: (6000, 4000),
                transform_runs: 5,
                api_runs: 3,
                voice_seconds: 60,
                video: (1920, 1080, 6),
                upload_bytes: 64 << 20,
                upload_single_runs: 3,
                upload_parallel_rounds: 2,
                load_clients: 8,
                load_uploads_per_client: 8,
                mix_photo: (4032, 3024),
                mix_voice_seconds: 15,
                mix_video: (1920, 1080, 3),
                mix_file_bytes: 2 << 20,
                links_seconds: 5.0,
                links_concurrency: 16,
                photos_sizes: PHOTO_SIZES,
                photos_clients: 8,
                photos_jobs: [400, 120],
                photos_transform_runs: 15,
                photos_peer_seconds: 8.0,
            },
            Suite::Full => Plan {
                photo: (6000, 4000),
                transform_runs: 10,
                api_runs: 3,
                voice_seconds: 60,
                video: (1920, 1080, 20),
                upload_bytes: 256 << 20,
                upload_single_runs: 5,
                upload_parallel_rounds: 2,
                load_clients: 16,
                load_uploads_per_client: 25,
                mix_photo: (4032, 3024),
                mix_voice_seconds: 15,
                mix_video: (1920, 1080, 5),
                mix_file_bytes: 8 << 20,
                links_seconds: 15.0,
                links_concurrency: 32,
                photos_sizes: PHOTO_SIZES,
                photos_clients: 8,
                photos_jobs: [1500, 500],
                photos_transform_runs: 30,
                photos_peer_seconds: 20.0,
            },
        }
    }
}

/// Counts and sizes of one suite; the report prints them so runs are read in context.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The 24 MP photo of the image workload (width, height).
    pub photo: (u32, u32),
    /// Timed runs of each transform command (satchel and every peer).
    pub transform_runs: usize,
    /// Uploads of the same input through the HTTP API, timed to `ready`.
    pub api_runs: usize,
    pub voice_seconds: u32,
    /// Width, height, seconds of the video workload's input.
    pub video: (u32, u32, u32),
    pub upload_bytes: usize,
    pub upload_single_runs: usize,
    /// Rounds of 16 concurrent uploads.
    pub upload_parallel_rounds: usize,
    pub load_clients: usize,
    pub load_uploads_per_client: usize,
    pub mix_photo: (u32, u32),
    pub mix_voice_seconds: u32,
    pub mix_video: (u32, u32, u32),
    pub mix_file_bytes: usize,
    pub links_seconds: f64,
    pub links_concurrency: usize,
    /// The photos workload's two photos (width, height), a chat's small photo and a larger one.
    pub photos_sizes: [(u32, u32); 2],
    /// Clients uploading at once in the photos workload.
    pub photos_clients: usize,
    /// Uploads of each of `photos_sizes`, in all clients together.
    pub photos_jobs: [usize; 2],
    /// Timed in-process runs of the transform alone, on each photo.
    pub photos_transform_runs: usize,
    /// How long the persistent-libvips peer's processes repeat their work on each photo.
    pub photos_peer_seconds: f64,
}

/// The photos workload's inputs in every suite: what the issue names, a 640x480 and a
/// 1600x1200 photo.
const PHOTO_SIZES: [(u32, u32); 2] = [(640, 480), (1600, 1200)];
