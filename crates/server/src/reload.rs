//! Live reload of the configuration on SIGHUP (`systemctl reload throttle`).
//!
//! A thread waits for SIGHUP, reads the configuration file again and applies it without touching
//! the state: semaphores are added, resized and re-levelled, removed ones keep their held locks
//! until released and answer `Unknown semaphore` to new acquires, a grown `max` grants waiters at
//! once (`Core::reconfigure`). Logging levels follow the new file. A file with an error is
//! logged (the same one line as at start) and the running configuration stays. Every reload is
//! counted in `throttle_config_reloads_total{result}`.
//!
//! What a reload does not change, because it is bound at start: where logs go (a GELF section
//! added or removed), the access token, the state file. Each is logged as needing a restart.
//!
//! The signal itself is delivered by `signals.rs`. Windows has no SIGHUP: there a restart with a
//! state file is the way to apply a new configuration.

use std::path::PathBuf;

use crate::config;
use crate::metrics::{Metrics, ReloadResult};
use crate::service::Service;
use throttle_core::SemaphoreSettings;

/// What a reload compares against: the parts of the configuration only a restart changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    /// The token of `[auth]` as read at start (the environment's `THROTTLE_TOKEN` wins anyway).
    pub token: Option<String>,
    /// `[state] file` as read at start.
    pub state_file: Option<PathBuf>,
    /// The `[cluster]` table as read at start.
    pub cluster: Option<crate::cluster_config::ClusterConfig>,
}

/// Reads the configuration again and applies it. Returns how it ended; everything worth saying
/// has been logged.
pub fn reload(
    path: Option<&std::path::Path>,
    fixed: &Fixed,
    service: &Service,
    metrics: &Metrics,
) -> ReloadResult {
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(error) => {
            log::error!("Reload failed, the running configuration stays: {error}");
            metrics.count_reload(ReloadResult::Error);
            return ReloadResult::Error;
        }
    };
    match crate::logging::set_levels(&loaded.config.logging) {
        Ok(Some(warning)) => log::warn!("Reload: {warning}"),
        Ok(None) => {}
        Err(error) => log::warn!("Reload: logging levels unchanged: {error}"),
    }
    for warning in &loaded.warnings {
        log::warn!("{warning}");
    }
    if loaded.config.auth.token != fixed.token {
        log::warn!("Reload: the [auth] token changed, which takes a restart");
    }
    if loaded.config.state.file != fixed.state_file {
        log::warn!("Reload: [state] file changed, which takes a restart");
    }
    if let Some(warning) = crate::cluster_config::restart_needed(
        fixed.cluster.as_ref(),
        loaded.config.cluster.as_ref(),
    ) {
        log::warn!("Reload: {warning}");
    }
    let semaphores = loaded
        .config
        .semaphores
        .into_iter()
        .map(SemaphoreSettings::from);
    let result = match service.reconfigure(semaphores) {
        Ok(result) => result,
        Err(error) => {
            log::error!("Reload: the semaphores were not changed: {error}");
            metrics.count_reload(ReloadResult::Error);
            return ReloadResult::Error;
        }
    };
    for name in &result.added {
        log::info!("Reload: semaphore {name:?} added");
    }
    for name in &result.changed {
        log::info!("Reload: semaphore {name:?} changed");
    }
    for (name, held) in &result.removed {
        log::info!("Reload: semaphore {name:?} removed; {held} still held, kept until released");
    }
    log::info!(
        "Configuration reloaded: {} added, {} changed, {} removed; {} waiting locks granted, \
         {} dropped",
        result.added.len(),
        result.changed.len(),
        result.removed.len(),
        result.granted.len(),
        result.cancelled.len()
    );
    metrics.count_reload(ReloadResult::Ok);
    ReloadResult::Ok
}
