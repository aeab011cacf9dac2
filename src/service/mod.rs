//! The service's own plumbing: configuration, start-up and shutdown, secrets, logs, metrics and the
//! command line. Nothing here decides an API outcome.

pub mod audit;
pub mod cli;
pub mod config;
pub mod logwriter;
pub mod metrics;
pub mod secrets;
pub mod server;
pub mod striped_metrics;
