//! This host's place among the hosts sharing one database.
//!
//! Every host sends a heartbeat (`riposte status` lists them). On a shared database
//! (PostgreSQL) the hosts elect one *acting* host through the `poller` lease: only the
//! holder polls, evaluates, executes approved actions and settles what a crash left
//! unresolved, so each (Malop, plugin) is evaluated once across the fleet. The others stand
//! by, renewing their heartbeats and trying the lease; when the holder dies its lease
//! expires and one of them takes over within [`Membership::lease`], settling first what the
//! dead host left (its actions are looked for on the server before anything is re-sent).
//!
//! The holder renews every heartbeat and treats the lease as lost one heartbeat before it
//! expires ([`Membership::may_act`]), so by the time another host can take it over the old
//! holder has stopped sending: the executor asks [`Membership::may_act`] just before each
//! request that changes something. A host that cannot reach the database cannot renew, and
//! so stops acting (fail closed); it resumes by itself once a renewal succeeds.
//!
//! On a database of its own (SQLite) a host always acts: the lease is not consulted.

use crate::db;
use riposte_domain::now_ms;
use riposte_metrics::Metrics;
use riposte_store::prelude::*;
use riposte_store::{HostStatus, LeaseGrant, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The lease the acting host holds.
pub const POLLER_LEASE: &str = "poller";

/// How often, at most, a syslog event is written between heartbeats (ms).
pub const EVENT_NOTE_EVERY_MS: i64 = 1_000;

/// Hosts silent for this long are dropped from `riposte status`.
const FORGET_SILENT_HOSTS: Duration = Duration::from_secs(7 * 24 * 3600);

/// How this host takes part in the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    /// Whether other hosts may share the database (PostgreSQL): then only the holder of the
    /// poller lease acts.
    pub shared: bool,
    /// How long a lease lasts unless renewed.
    pub lease: Duration,
    /// How often the heartbeat (and the lease) is renewed; less than half the lease.
    pub heartbeat: Duration,
    /// This host's id in the fleet.
    pub host_id: String,
}

/// The environment variable that names this host in the fleet (default `hostname:pid`).
pub const HOST_ID_ENV: &str = "RIPOSTE_HOST_ID";

/// This host's default id: `RIPOSTE_HOST_ID`, or `hostname:pid`.
pub fn default_host_id() -> String {
    if let Ok(id) = std::env::var(HOST_ID_ENV)
        && !id.trim().is_empty()
    {
        return riposte_domain::bounds::prefix(id.trim(), riposte_store::MAX_HOST_ID_BYTES)
            .to_owned();
    }
    let host = riposte_domain::host_name().unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// What this host may do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// It acts, until `until_ms` (its clock) unless it renews the lease before.
    Acting {
        /// When the lease is treated as lost (one heartbeat before it expires).
        until_ms: i64,
        /// The lease's epoch (how many times it changed hands).
        epoch: i64,
    },
    /// Another host acts.
    Standby {
        /// The host holding the lease.
        holder: String,
        /// When its lease expires unless renewed.
        until_ms: i64,
    },
    /// The database could not be reached at the last heartbeat: nothing is done.
    Unreachable,
}

impl Role {
    /// Its name, as the `fleet_role` metric labels it.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Acting { .. } => "acting",
            Role::Standby { .. } => "standby",
            Role::Unreachable => "unreachable",
        }
    }
}

/// This host's membership of the fleet.
pub struct Membership {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    settings: FleetSettings,
    started_at_ms: i64,
    role: watch::Sender<Role>,
    /// Set once this host has left; held while a heartbeat writes, so that a heartbeat
    /// whose task was cancelled (its blocking write still running) cannot bring the host
    /// back after it left.
    left: Arc<std::sync::Mutex<bool>>,
    /// When the last syslog event reached this host (ms; 0 for none yet), told at each
    /// heartbeat.
    last_event_ms: AtomicI64,
    /// When an event was last written between heartbeats (ms; 0 for never).
    last_noted_ms: AtomicI64,
}

impl Membership {
    /// A member that has not yet sent its first heartbeat: on a shared database it does not
    /// act until [`Membership::beat`] wins the lease.
    pub fn new(store: Arc<Store>, settings: FleetSettings, metrics: Arc<Metrics>) -> Arc<Self> {
        let initial = if settings.shared {
            Role::Unreachable
        } else {
            Role::Acting {
                until_ms: i64::MAX,
                epoch: 0,
            }
        };
        metrics.set_fleet_role(initial.name());
        Arc::new(Self {
            store,
            metrics,
            settings,
            started_at_ms: now_ms(),
            role: watch::Sender::new(initial),
            left: Arc::new(std::sync::Mutex::new(false)),
            last_event_ms: AtomicI64::new(0),
            last_noted_ms: AtomicI64::new(0),
        })
    }

    /// Notes that a syslog event reached this host at `at_ms`: told at every heartbeat,
    /// and at once unless an event was written less than [`EVENT_NOTE_EVERY_MS`] before (so
    /// a flood of events costs at most one small write a second).
    pub async fn event_received(&self, at_ms: i64) {
        self.last_event_ms.fetch_max(at_ms, Ordering::Relaxed);
        let noted = self.last_noted_ms.load(Ordering::Relaxed);
        if at_ms - noted < EVENT_NOTE_EVERY_MS
            || self
                .last_noted_ms
                .compare_exchange(noted, at_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let host = self.settings.host_id.clone();
        let noted = db::blocking(&self.store, "note_event", move |s| {
            s.note_event(&host, at_ms)
        })
        .await;
        if let Err(e) = noted {
            tracing::debug!("noting the syslog event (the next heartbeat tells it): {e}");
        }
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.settings.host_id
    }

    /// How long a lease lasts unless renewed: the longest a dead host's work waits.
    pub fn lease(&self) -> Duration {
        self.settings.lease
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Follows the role as it changes.
    pub fn watch(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// Whether this host may act now: always on a database of its own; on a shared one,
    /// while it holds the poller lease with a heartbeat's margin left.
    pub fn may_act(&self) -> bool {
        match *self.role.borrow() {
            Role::Acting { until_ms, .. } => now_ms() < until_ms,
            _ => false,
        }
    }

    /// Sends a heartbeat and, on a shared database, takes or renews the poller lease.
    /// Returns the role it leaves, and the host whose expired lease it took over (if any).
    pub async fn beat(&self) -> (Role, Option<String>) {
        let (shared, ttl_ms) = (self.settings.shared, millis(self.settings.lease));
        let mut host = HostStatus {
            host_id: self.settings.host_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at_ms: self.started_at_ms,
            heartbeat_ms: 0,
            holding: self.holding(),
            last_event_ms: Some(self.last_event_ms.load(Ordering::Relaxed)).filter(|t| *t > 0),
        };
        let margin_ms = millis(self.settings.heartbeat);
        let left = self.left.clone();
        let answer = db::blocking(&self.store, "heartbeat", move |s| {
            let left = left.lock().unwrap_or_else(|p| p.into_inner());
            if *left {
                return Ok(None);
            }
            let now = now_ms();
            host.heartbeat_ms = now;
            s.heartbeat(&host)?;
            if !shared {
                return Ok(None);
            }
            s.acquire_lease(POLLER_LEASE, &host.host_id, ttl_ms, now)
                .map(Some)
        })
        .await;
        if *self.left.lock().unwrap_or_else(|p| p.into_inner()) {
            return (Role::Unreachable, None);
        }
        let (role, taken_from) = match answer {
            Ok(None) => (self.role(), None),
            Ok(Some(LeaseGrant::Held { lease, taken_from })) => (
                Role::Acting {
                    until_ms: lease.expires_at_ms - margin_ms,
                    epoch: lease.epoch,
                },
                taken_from,
            ),
            Ok(Some(LeaseGrant::Refused { lease })) => (
                Role::Standby {
                    holder: lease.holder,
                    until_ms: lease.expires_at_ms,
                },
                None,
            ),
            Err(error) => {
                tracing::error!(
                    "heartbeat failed; not acting until the database answers again: {error:#}"
                );
                (Role::Unreachable, None)
            }
        };
        self.metrics.set_fleet_role(role.name());
        self.role.send_if_modified(|current| {
            let changed = std::mem::discriminant(current) != std::mem::discriminant(&role);
            *current = role.clone();
            changed
        });
        (role, taken_from)
    }

    /// What this host holds, for its heartbeat.
    fn holding(&self) -> String {
        match &*self.role.borrow() {
            Role::Acting { epoch, .. } if self.settings.shared => {
                format!("{POLLER_LEASE} lease (epoch {epoch})")
            }
            Role::Acting { .. } => "everything (database of its own)".to_owned(),
            Role::Standby { holder, .. } => format!("standing by for {holder}"),
            Role::Unreachable => "nothing: the database is unreachable".to_owned(),
        }
    }

    /// Beats every [`FleetSettings::heartbeat`] until the returned task is aborted,
    /// forgetting long-silent hosts now and then.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let member = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(member.settings.heartbeat);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut beats: u64 = 0;
            loop {
                ticks.tick().await;
                let (role, taken_from) = member.beat().await;
                if let Some(previous) = taken_from {
                    tracing::warn!(previous = %previous, ?role, "took the poller lease over from a silent host");
                }
                beats += 1;
                if beats % 1_000 == 1 {
                    let cutoff = now_ms() - millis(FORGET_SILENT_HOSTS);
                    if let Err(e) = db::blocking(&member.store, "forget_hosts", move |s| {
                        s.forget_hosts(cutoff)
                    })
                    .await
                    {
                        tracing::warn!("forgetting silent hosts: {e:#}");
                    }
                }
            }
        })
    }

    /// Leaves the fleet at a clean shutdown: gives the lease up, so another host takes over
    /// at once, and drops this host from `riposte status` (a host that dies stays listed,
    /// with its last heartbeat, until it has been silent for a week).
    pub async fn leave(&self) {
        let host = self.settings.host_id.clone();
        let gate = self.left.clone();
        let left = db::blocking(&self.store, "leave", move |s| {
            let mut left = gate.lock().unwrap_or_else(|p| p.into_inner());
            *left = true;
            s.leave(&host, now_ms())
        })
        .await;
        self.role.send_replace(Role::Unreachable);
        if let Err(e) = left {
            tracing::warn!("leaving the fleet: {e:#}; the lease expires by itself");
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_heartbeat_after_leaving_does_not_bring_the_host_back() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let settings = FleetSettings {
            shared: false,
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            host_id: "h".to_owned(),
        };
        let member = Membership::new(store.clone(), settings, Arc::new(Metrics::new()));
        member.beat().await;
        let hosts = store.fleet().unwrap().0;
        assert_eq!(hosts.len(), 1, "the heartbeat lists the host");
        assert_eq!(hosts[0].last_event_ms, None, "no syslog event yet");
        assert!(member.may_act());
        member.event_received(1_000).await;
        let hosts = store.fleet().unwrap().0;
        assert_eq!(hosts[0].last_event_ms, Some(1_000), "told at once");
        member.event_received(1_500).await;
        member.event_received(900).await;
        let hosts = store.fleet().unwrap().0;
        assert_eq!(
            hosts[0].last_event_ms,
            Some(1_000),
            "within a second of the last: not yet"
        );
        member.beat().await;
        let hosts = store.fleet().unwrap().0;
        assert_eq!(
            hosts[0].last_event_ms,
            Some(1_500),
            "the latest event, told"
        );

        member.leave().await;
        assert!(store.fleet().unwrap().0.is_empty(), "leaving unlists it");
        // A heartbeat that comes late (its task was cancelled, its write was not) finds the
        // host gone and leaves it gone.
        let (role, _) = member.beat().await;
        assert_eq!(role, Role::Unreachable);
        assert!(store.fleet().unwrap().0.is_empty(), "still unlisted");
        assert!(!member.may_act(), "a host that left does not act");
    }
}
