//! The API test suite: every test starts the real server on port 0 with a fresh data
//! directory and drives it over HTTP, as a chat backend would.

mod helpers;

mod animations;
mod auth;
mod binaries;
mod broker;
mod browser;
mod catalog_concurrency;
mod cli;
mod cluster;
mod codes;
mod downloads;
mod erase_races;
mod events;
mod fairness;
mod heif;
mod hostile;
mod limits;
mod links;
mod media;
mod members;
mod ops;
mod originals;
mod process_lifecycle;
mod processes;
mod quotas;
mod s3;
mod sandbox;
mod slow_clients;
mod tls;
mod tls_backends;
mod tus;
mod tus_clients;
mod uploads;
mod webhooks;
