//! The `register` binary: parse flags, load the configuration, run the service or an admin command.
//! A failed start exits with status 7 (SERVICE_START_ERROR).

use clap::Parser;
use register::service::cli::{self, Cli, Command};
use register::service::config::Config;
use register::service::server::{signal, Server};

const START_ERROR: i32 = 7;

/// jemalloc, not glibc's malloc: the HTTPS path's allocations, made on one worker and freed on
/// another, waited on glibc's arena locks (two `futex` calls a request); with jemalloc HTTPS
/// `/get_users` and TCP token checks each answer more per second (BENCHMARKS.md, "Session 10").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let args = Cli::parse();
    let cfg = match Config::load(args.config.as_deref(), std::env::vars(), &args.set) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("register: {e}");
            std::process::exit(START_ERROR);
        }
    };
    let log = cli::init_logging(&cfg);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("register: starting the runtime: {e}");
            drop(log);
            std::process::exit(START_ERROR);
        }
    };
    let code = rt.block_on(async move {
        match args.command.unwrap_or(Command::Run) {
            Command::Run => run(cfg).await,
            Command::Check => cli::check(cfg).await,
            Command::User { action } => cli::user(cfg, action).await,
            Command::Token { action } => cli::token(cfg, action).await,
            Command::Reconcile => cli::reconcile(cfg).await,
            Command::Audit { user, since, limit } => cli::audit(cfg, user, since, limit).await,
        }
    });
    // Whatever still runs on the blocking pool gets a second; then the log lines still buffered.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    drop(log);
    std::process::exit(code);
}

async fn run(cfg: Config) -> i32 {
    let server = match Server::start(cfg).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "start failed");
            eprintln!("register: {e}");
            return START_ERROR;
        }
    };
    let token = server.shutdown.clone();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutting down");
        token.cancel();
    });
    match server.wait().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("register: {e}");
            8
        }
    }
}
