//! satchel: media processing for chat backends. See ARCHITECTURE.md for the map.

pub mod app;
pub mod background;
pub mod catalog;
pub mod cli;
pub mod codes;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod jobs;
pub mod limits;
pub mod links;
pub mod metrics;
pub mod queue;
pub mod secrets;
pub mod state;
pub mod storage;
pub mod strip;
pub mod sweeper;
pub mod tls;
pub mod usecase;

pub use app::Application;
pub use config::Config;
