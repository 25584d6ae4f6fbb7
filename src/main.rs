//! The `throttle` executable: reads the command line and the configuration, starts logging, the
//! worker pool and the expiry thread, and shuts them down on SIGINT or SIGTERM (Ctrl+C on
//! Windows; `signals.rs`). With a state file it loads the peers at start and writes them at shutdown
//! (`restart.rs`); SIGHUP reloads the configuration (`reload.rs`).
//!
//! Data flow of a request: `http.rs` (tiny_http worker, body) → `routes.rs` (parse into a
//! `Route`) → `service.rs` (lock, sweep, wait, wake) → `core.rs` (the bookkeeping) → back to
//! `http.rs` (status code and body). Beside them: `expiry.rs` runs the expiry thread,
//! `metrics.rs`, `config.rs`, `cli.rs`, `logging.rs` and `error.rs`; for restarts `restart.rs`,
//! `state_file.rs`, `lease_watch.rs` and `reload.rs`.
//!
//! `throttle lock` and `throttle status` are clients of a server, in `client_cli.rs`; they use
//! none of the above but the command line and the logger.
#![forbid(unsafe_code)]

mod cli;
mod client_cli;
mod config;
mod core;
mod error;
mod expiry;
mod fd_limit;
mod http;
mod lease_watch;
mod logging;
mod metrics;
mod reload;
mod restart;
mod routes;
mod service;
mod signals;
mod state_file;
mod status;
mod waiting;

/// The static musl build allocates with mimalloc (the default feature `mimalloc`): musl's own
/// allocator takes one global lock, and with it the static build often served half the requests
/// per second on a busy machine (README, Performance). Other targets keep the platform's.
#[cfg(all(feature = "mimalloc", target_env = "musl"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::cli::{Command, Options};
use crate::core::{Core, SemaphoreSettings};
use crate::http::App;
use crate::metrics::Metrics;
use crate::service::Service;

/// How long a shutdown waits for long polls to write their last answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            let help = match std::env::args().nth(1).as_deref() {
                Some(word @ ("lock" | "status")) => format!("throttle {word} --help"),
                _ => "throttle --help".to_owned(),
            };
            eprintln!("throttle: {error}\nTry '{help}' for more information.");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", cli::HELP);
            ExitCode::SUCCESS
        }
        Command::HelpFor(topic) => {
            print!("{}", topic.help());
            ExitCode::SUCCESS
        }
        Command::Lock(options) => client_cli::lock(options),
        Command::Status(options) => client_cli::status(options),
        Command::Version => {
            println!("throttle {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Serve(options) => match serve(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("throttle: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs the server until a termination signal arrives.
fn serve(options: Options) -> Result<(), String> {
    let loaded = config::load(options.configuration.as_deref())?;
    logging::init(&loaded.config.logging)?;
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    log::info!("Starting throttle {}", env!("CARGO_PKG_VERSION"));

    let state_file = options
        .state_file
        .clone()
        .or(loaded.config.state.file.clone());
    let saved = match &state_file {
        Some(file) => restart::read(file, options.state_file_reset)?,
        None => None,
    };
    let semaphores = loaded
        .config
        .semaphores
        .into_iter()
        .map(SemaphoreSettings::from);
    let mut core = Core::new(semaphores);
    let grace = restart::Previous::of(saved.as_ref()).grace(options.grace);
    let leases = lease_watch::LeaseWatch::default();
    restart::apply(
        &mut core,
        state_file.as_deref(),
        saved.as_ref(),
        grace,
        &leases,
        Instant::now(),
        SystemTime::now(),
    )?;
    drop(saved);
    let service = Arc::new(Service::new(core, options.max_peers));
    service.leases().note(leases.longest());
    let metrics = Metrics::new().map_err(|e| format!("cannot set up metrics: {e}"))?;
    // The environment wins over the file, so the secret need not be written into it.
    let fixed = reload::Fixed {
        token: loaded.config.auth.token.clone(),
        state_file: loaded.config.state.file.clone(),
    };
    let token = std::env::var("THROTTLE_TOKEN")
        .ok()
        .filter(|token| !token.is_empty())
        .or(loaded.config.auth.token);
    if token.is_some() {
        log::info!("Access control on: every route but / and /health needs the token");
    }
    let app = Arc::new(App {
        service: service.clone(),
        metrics,
        token,
    });

    let (max_connections, open_files) = fd_limit::fit_connections(options.max_connections);
    match open_files {
        Some(limit) if max_connections < options.max_connections => log::warn!(
            "The open-files limit is {limit} (ulimit -n): serving at most {max_connections} \
             connections, not {}",
            options.max_connections
        ),
        _ => log::info!("Serving up to {max_connections} connections at once"),
    }
    let limits = tiny_http::ConnectionLimits {
        max_connections,
        idle_timeout: Some(options.idle_timeout),
        request_timeout: options.request_timeout,
        max_head_bytes: http::HEAD_LIMIT,
        max_body_bytes: http::BODY_LIMIT,
    };
    let server =
        tiny_http::Server::http_with_limits((options.address.as_str(), options.port), limits)
            .map_err(|e| format!("cannot listen on {}:{}: {e}", options.address, options.port))?;
    let server = Arc::new(server);
    match server.server_addr().to_ip() {
        Some(address) => log::info!("Listening on http://{address}"),
        None => log::info!("Listening on {}", server.server_addr()),
    }
    // Only now is the loaded file replaced by the "running" marker: a start that fails before
    // (a port in use) leaves it as it was.
    let keeper = match state_file {
        Some(file) => {
            let next_token = service.inspect(|core, _, _| core.next_token());
            Some(restart::Keeper::start(
                file,
                service.leases().clone(),
                next_token,
            )?)
        }
        None => None,
    };

    // Register the handlers before starting threads, so an early signal is not lost.
    let signals = {
        let (app, configuration) = (app.clone(), options.configuration.clone());
        signals::Signals::install(move || {
            reload::reload(configuration.as_deref(), &fixed, &app.service, &app.metrics);
        })?
    };
    let expiry = expiry::spawn(service.clone()).map_err(|e| format!("cannot start: {e}"))?;
    let pools = http::spawn_pools(&server, &app, options.workers, options.max_waiters)
        .map_err(|e| format!("cannot start the worker threads: {e}"))?;

    signals.wait_for_stop();
    log::info!("Shutting down");
    server.stop_accepting();
    service.shut_down();
    // Waiting long polls are answered 202 now; their threads end once they have written it.
    pools.waiting.shut_down(SHUTDOWN_GRACE);
    for _ in &pools.workers {
        server.unblock();
    }
    for worker in pools.workers {
        let _ = worker.join();
    }
    let _ = expiry.join();
    signals.close();
    if let Some(keeper) = keeper {
        keeper.finish(&service)?;
    }
    log::info!("Stopped");
    Ok(())
}
