//! This process as a member of a cluster: starts the links to the other members, the raft
//! thread with the service as its state machine, and attaches the service to the log; stops
//! them at the end.
//!
//! What this is not: the configuration's checks (`config.rs`), what a committed entry does
//! (`replication.rs` and the core), or how the log and the links work (`throttle-cluster`).

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use throttle_cluster::Message;
use throttle_cluster::link::{self, Links, Membership};
use throttle_cluster::node::{Node, Outbox, Settings};
use throttle_core::SemaphoreSettings;

use crate::replication::{Applier, Replication};
use crate::service::Service;

/// One raft tick: heartbeats go every tick, an election starts after 10 to 20 ticks without a
/// leader's word (0.5 to 1 s), so a failover takes about a second.
const TICK: Duration = Duration::from_millis(50);

/// What a member needs to start: the `[cluster]` table, checked.
#[derive(Clone)]
pub struct MemberSettings {
    /// This member's position in `members`, from 1.
    pub id: u64,
    /// Where each member listens for the others.
    pub members: Vec<String>,
    /// The member's log and snapshots.
    pub data_dir: PathBuf,
    /// The cluster's secret (empty for a cluster of one, which has no links).
    pub secret: Vec<u8>,
    /// Where to listen for the others, if not at this member's entry of `members`.
    pub listen: Option<String>,
    /// Log entries between two snapshots.
    pub snapshot_every: u64,
}

/// A running member.
pub struct Member {
    node: Node,
    stop_links: Arc<AtomicBool>,
    /// A cluster of one: nobody to hand the lead to.
    alone: bool,
}

impl Member {
    /// Opens the log in `data_dir`, starts the links and the raft thread with `service` as its
    /// machine, and attaches the service to the log. `semaphores` (this member's configuration
    /// file's) are what it proposes whenever it is elected.
    pub fn start(
        settings: MemberSettings,
        service: &Arc<Service>,
        semaphores: Vec<SemaphoreSettings>,
    ) -> Result<Member, String> {
        let MemberSettings {
            id,
            members,
            data_dir,
            secret,
            listen,
            snapshot_every,
        } = settings;
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        let voters: Vec<u64> = (1..=members.len() as u64).collect();
        let (inbox, input) = mpsc::channel();
        let stop_links = Arc::new(AtomicBool::new(false));
        let wires = if members.len() > 1 {
            let membership = Membership {
                id,
                members: members.clone(),
                secret,
            };
            let address = listen
                .or_else(|| members.get((id - 1) as usize).cloned())
                .unwrap_or_default();
            let listener = TcpListener::bind(&address)
                .map_err(|e| format!("cannot listen for the other members on {address}: {e}"))?;
            let (links, _) = link::start(membership, listener, inbox.clone(), stop_links.clone())
                .map_err(|e| format!("cannot start the links between members: {e}"))?;
            Wires::Links(links)
        } else {
            Wires::Alone
        };
        let applier = Applier::new(service.clone(), semaphores);
        let shared = applier.shared();
        let node_settings = Settings {
            id,
            voters,
            tick: TICK,
            snapshot_every,
        };
        let node = Node::start_with_inbox(&data_dir, node_settings, applier, wires, (inbox, input))
            .map_err(|e| format!("cannot open the log in {}: {e}", data_dir.display()))?;
        service.attach(Replication::new(
            node.proposer(),
            node.status_handle(),
            shared,
            members.len(),
        ));
        log::info!(
            "Cluster member {id} of {}: log in {}",
            members.len(),
            data_dir.display()
        );
        Ok(Member {
            node,
            stop_links,
            alone: members.len() == 1,
        })
    }

    /// Hands the lead to another member if this one leads, waiting at most `within`: at a
    /// graceful stop, so the others need not wait for an election timeout.
    pub fn hand_over(&self, within: Duration) {
        if self.alone {
            return;
        }
        if !self.node.hand_over(within) {
            log::warn!("No other member took the lead within {within:?}");
        }
    }

    /// Stops the raft thread (after which nothing more is applied or acknowledged) and the
    /// links.
    pub fn stop(self) -> Result<(), String> {
        let result = self.node.stop();
        self.stop_links.store(true, Ordering::Relaxed);
        result.map_err(|e| format!("the member's log failed: {e}"))
    }
}

/// Where the raft thread's messages go: the links, or nowhere for a cluster of one.
enum Wires {
    Alone,
    Links(Links),
}

impl Outbox for Wires {
    fn send(&mut self, message: Message) {
        match self {
            Wires::Alone => {}
            Wires::Links(links) => links.send(message),
        }
    }
}
