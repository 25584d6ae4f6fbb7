//! Starting and stopping a server: reads the configuration, starts logging, loads the state
//! file, and wires the service, the worker pool, the waiting pool, the expiry thread and the
//! signal handlers together; at a stop it takes them down in order and writes the state file.
//! With a `[cluster]` table it starts a cluster member (`member.rs`) instead of loading a state
//! file. It decides nothing about requests: that is `workers.rs` and below.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::cluster_config::{self, ClusterConfig};
use crate::member::{Member, MemberSettings};
use crate::metrics::Metrics;
use crate::options::Options;
use crate::service::Service;
use crate::workers::App;
use crate::{
    config, expiry, fd_limit, lease_watch, logging, options, persistence, reload, signals, workers,
};
use throttle_core::{Core, SemaphoreSettings};

/// How long a shutdown waits for long polls to write their last answers.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a cluster member that leads waits at a graceful stop for another to take the lead.
const HAND_OVER: Duration = Duration::from_secs(2);

/// The limits tiny_http keeps for every connection: the options' timeouts, `max_connections`
/// (fitted to the open-files limit by [`fd_limit::fit_connections`]) and the HTTP layer's bounds
/// on heads and bodies. `examples/floor.rs` serves with the same.
pub fn connection_limits(
    options: &Options,
    max_connections: usize,
) -> throttle_http::ConnectionLimits {
    throttle_http::ConnectionLimits {
        max_connections,
        idle_timeout: Some(options.idle_timeout),
        request_timeout: options.request_timeout,
        max_head_bytes: workers::HEAD_LIMIT,
        max_body_bytes: workers::BODY_LIMIT,
    }
}

/// Runs the server until a termination signal arrives.
pub fn serve(options: Options) -> Result<(), String> {
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
    let cluster = match &loaded.config.cluster {
        Some(cluster) => Some(member_settings(cluster, &options, state_file.is_some())?),
        None => None,
    };
    let saved = match &state_file {
        Some(file) => persistence::read(file, options.state_file_reset)?,
        None => None,
    };
    let semaphores: Vec<SemaphoreSettings> = loaded
        .config
        .semaphores
        .into_iter()
        .map(SemaphoreSettings::from)
        .collect();
    let mut core = Core::new(semaphores.clone());
    let grace = persistence::Previous::of(saved.as_ref()).grace(options.grace);
    let leases = lease_watch::LeaseWatch::default();
    let clock = Clock::start();
    persistence::apply(
        &mut core,
        state_file.as_deref(),
        saved.as_ref(),
        grace,
        &leases,
        clock.now(),
        SystemTime::now(),
    )?;
    drop(saved);
    let (service, member) = match cluster {
        None => (Arc::new(Service::new(core, clock, options.max_peers)), None),
        Some(settings) => {
            // A member's state is the log's, not the file's: its core starts empty.
            let service = Arc::new(Service::member(options.max_peers));
            let member = Member::start(settings, &service, semaphores)?;
            (service, Some(member))
        }
    };
    service.leases().note(leases.longest());
    let metrics = Metrics::new().map_err(|e| format!("cannot set up metrics: {e}"))?;
    // The environment wins over the file, so the secret need not be written into it.
    let fixed = reload::Fixed {
        token: loaded.config.auth.token.clone(),
        state_file: loaded.config.state.file.clone(),
        cluster: loaded.config.cluster.clone(),
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
    let limits = connection_limits(&options, max_connections);
    let server =
        throttle_http::Server::http_with_limits((options.address.as_str(), options.port), limits)
            .map_err(|e| format!("cannot listen on {}:{}: {e}", options.address, options.port))?;
    let server = Arc::new(server);
    log::info!("Listening on http://{}", server.server_addr());
    // Only now is the loaded file replaced by the "running" marker: a start that fails before
    // (a port in use) leaves it as it was.
    let keeper = match state_file {
        Some(file) => {
            let next_token = service.inspect(|core, _, _| core.next_token());
            Some(persistence::Keeper::start(
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
    let workers = options.workers.unwrap_or(match member {
        Some(_) => options::DEFAULT_MEMBER_WORKERS,
        None => options::DEFAULT_WORKERS,
    });
    let pools = workers::spawn_pools(&server, &app, workers, options.max_waiters)
        .map_err(|e| format!("cannot start the worker threads: {e}"))?;

    signals.wait_for_stop();
    log::info!("Shutting down");
    server.stop_accepting();
    if let Some(member) = &member {
        // Requests still in progress here are then served by the new leader.
        member.hand_over(HAND_OVER);
    }
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
    if let Some(member) = member {
        if let Some(replication) = service.replication() {
            replication.shut_down();
        }
        member.stop()?;
    }
    if let Some(keeper) = keeper {
        keeper.finish(&service)?;
    }
    log::info!("Stopped");
    Ok(())
}

/// The `[cluster]` table made ready to start a member: its secret resolved, and the options
/// that have no meaning for a member refused.
fn member_settings(
    cluster: &ClusterConfig,
    options: &Options,
    state_file: bool,
) -> Result<MemberSettings, String> {
    if state_file {
        return Err(
            "a cluster member keeps its state in [cluster] data_dir: remove the state \
                    file (--state-file or [state] file)"
                .into(),
        );
    }
    if options.grace.is_some() {
        return Err(
            "a cluster member needs no --grace: its locks survive a restart in its log".into(),
        );
    }
    let secret = cluster.resolve_secret(std::env::var(cluster_config::SECRET_VARIABLE).ok())?;
    Ok(MemberSettings {
        id: cluster.id,
        members: cluster.members.clone(),
        data_dir: cluster.data_dir.clone(),
        secret: secret
            .map(|secret| secret.as_bytes().to_vec())
            .unwrap_or_default(),
        listen: cluster.listen.clone(),
        snapshot_every: cluster.snapshot_every,
    })
}
