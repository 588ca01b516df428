//! Running jobs: one step that turns a queued job into an outcome ([`run::run_job`]), and the
//! pool of workers that feed it ([`pool::WorkerPool`]).

pub mod dead_letters;
pub mod isolate;
pub mod pool;
pub mod run;

pub use pool::WorkerPool;
pub use run::{run_job, Outcome};
