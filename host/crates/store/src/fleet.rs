//! Several hosts on one database: their heartbeats, and leases that one host holds at a time.
//!
//! A lease is held until its expiry, on the holder's clock; the holder renews it well before
//! then, and a host that dies stops renewing it, so another takes it over once it expires.
//! Every grant and renewal is one write transaction, serialised against every other
//! writer, so two hosts never both hold a lease at the same moment of the database's
//! commit order. Hosts' clocks must agree to well within a lease's length (NTP).

use super::{Failure, Result, Store};
use crate::repos::Fleet;
use crate::sql::{OptionalExtension, Row, Tx, params};
use riposte_domain::bounds::prefix as bounded;
use serde::Serialize;

/// The longest host id kept (bytes; a longer one is cut, so a host must use ids this short
/// to be found again by its leases).
pub const MAX_HOST_ID_BYTES: usize = 128;

/// The longest account of what a host holds that is kept (bytes; longer is cut).
pub const MAX_HOLDING_BYTES: usize = 512;

/// One host, as its heartbeats describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    /// The host's id (`hostname:pid` unless configured).
    pub host_id: String,
    /// The riposte version it runs.
    pub version: String,
    /// When it started (its clock, ms).
    pub started_at_ms: i64,
    /// Its last heartbeat (its clock, ms).
    pub heartbeat_ms: i64,
    /// What it said it holds at its last heartbeat (leases, actions being followed).
    pub holding: String,
    /// The last syslog event its listener accepted (its clock, ms), if it listens and had one.
    pub last_event_ms: Option<i64>,
}

/// A lease and its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseStatus {
    /// The lease, e.g. `poller`.
    pub name: String,
    /// The host holding it (or that last held it, once it expired).
    pub holder: String,
    /// How many times it changed hands (1 for its first holder).
    pub epoch: i64,
    /// When the holder acquired it (ms).
    pub acquired_at_ms: i64,
    /// When it expires unless renewed (ms).
    pub expires_at_ms: i64,
}

/// The answer to [`Fleet::acquire_lease`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseGrant {
    /// The caller holds the lease until `lease.expires_at_ms`. `taken_from` names the
    /// host whose expired lease it took over (not set on a renewal or a first grant).
    Held {
        /// The lease as now recorded.
        lease: LeaseStatus,
        /// The previous holder, when this grant took an expired lease over from another.
        taken_from: Option<String>,
    },
    /// Another host holds it.
    Refused {
        /// The lease and its holder.
        lease: LeaseStatus,
    },
}

impl LeaseGrant {
    /// Whether the caller holds the lease.
    pub fn is_held(&self) -> bool {
        matches!(self, LeaseGrant::Held { .. })
    }

    /// The lease as recorded.
    pub fn lease(&self) -> &LeaseStatus {
        match self {
            LeaseGrant::Held { lease, .. } | LeaseGrant::Refused { lease } => lease,
        }
    }
}

const LEASE_COLUMNS: &str = "name, holder, epoch, acquired_at_ms, expires_at_ms";

fn lease_row(r: &Row) -> super::Op<LeaseStatus> {
    Ok(LeaseStatus {
        name: r.get(0)?,
        holder: r.get(1)?,
        epoch: r.get(2)?,
        acquired_at_ms: r.get(3)?,
        expires_at_ms: r.get(4)?,
    })
}

fn load_lease(tx: &Tx<'_>, name: &str) -> super::Op<Option<LeaseStatus>> {
    tx.query_row(
        &format!("SELECT {LEASE_COLUMNS} FROM fleet_leases WHERE name = ?1"),
        params![name],
        lease_row,
    )
    .optional()
}

pub(crate) fn hosts(tx: &Tx<'_>) -> super::Op<Vec<HostStatus>> {
    tx.query_map(
        "SELECT host_id, version, started_at_ms, heartbeat_ms, holding, last_event_ms \
         FROM fleet_hosts ORDER BY host_id",
        params![],
        |r| {
            Ok(HostStatus {
                host_id: r.get(0)?,
                version: r.get(1)?,
                started_at_ms: r.get(2)?,
                heartbeat_ms: r.get(3)?,
                holding: r.get(4)?,
                last_event_ms: r.get(5)?,
            })
        },
    )
}

pub(crate) fn leases(tx: &Tx<'_>) -> super::Op<Vec<LeaseStatus>> {
    tx.query_map(
        &format!("SELECT {LEASE_COLUMNS} FROM fleet_leases ORDER BY name"),
        params![],
        lease_row,
    )
}

impl Fleet for Store {
    fn heartbeat(&self, host: &HostStatus) -> Result<()> {
        self.write("heartbeat", |tx| {
            tx.execute(
                "INSERT INTO fleet_hosts \
                 (host_id, version, started_at_ms, heartbeat_ms, holding, last_event_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (host_id) DO UPDATE SET \
                 version = excluded.version, started_at_ms = excluded.started_at_ms, \
                 heartbeat_ms = excluded.heartbeat_ms, holding = excluded.holding, \
                 last_event_ms = CASE WHEN excluded.last_event_ms IS NULL \
                   OR excluded.last_event_ms < fleet_hosts.last_event_ms \
                   THEN fleet_hosts.last_event_ms ELSE excluded.last_event_ms END",
                params![
                    bounded(&host.host_id, MAX_HOST_ID_BYTES),
                    bounded(&host.version, 64),
                    host.started_at_ms,
                    host.heartbeat_ms,
                    bounded(&host.holding, MAX_HOLDING_BYTES),
                    host.last_event_ms
                ],
            )?;
            Ok(())
        })
    }

    fn note_event(&self, host_id: &str, at_ms: i64) -> Result<()> {
        self.write("note_event", |tx| {
            tx.execute(
                "UPDATE fleet_hosts SET last_event_ms = ?2 WHERE host_id = ?1 \
                 AND (last_event_ms IS NULL OR last_event_ms < ?2)",
                params![host_id, at_ms],
            )?;
            Ok(())
        })
    }

    fn acquire_lease(
        &self,
        name: &str,
        host_id: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<LeaseGrant> {
        if ttl_ms <= 0 {
            return Err(super::tag(
                self.path(),
                "acquire_lease",
                Failure::Refused(super::Refusal::InvalidArgument(format!(
                    "a lease of {ttl_ms} ms"
                ))),
            ));
        }
        self.write("acquire_lease", |tx| {
            let expires_at_ms = now_ms.saturating_add(ttl_ms);
            let Some(current) = load_lease(tx, name)? else {
                tx.execute(
                    &format!(
                        "INSERT INTO fleet_leases ({LEASE_COLUMNS}) VALUES (?1, ?2, 1, ?3, ?4)"
                    ),
                    params![name, host_id, now_ms, expires_at_ms],
                )?;
                let lease = load_lease(tx, name)?.ok_or(Failure::NoRows)?;
                return Ok(LeaseGrant::Held {
                    lease,
                    taken_from: None,
                });
            };
            if current.holder == host_id && current.expires_at_ms > now_ms {
                tx.execute(
                    "UPDATE fleet_leases SET expires_at_ms = ?3 WHERE name = ?1 AND holder = ?2",
                    params![name, host_id, expires_at_ms.max(current.expires_at_ms)],
                )?;
                let lease = load_lease(tx, name)?.ok_or(Failure::NoRows)?;
                return Ok(LeaseGrant::Held {
                    lease,
                    taken_from: None,
                });
            }
            if current.expires_at_ms > now_ms {
                return Ok(LeaseGrant::Refused { lease: current });
            }
            // Expired: the caller takes it over (from itself too, after a gap: a new epoch
            // either way, so whatever it did under the old one is recovered like a crash's).
            tx.execute(
                "UPDATE fleet_leases SET holder = ?2, epoch = epoch + 1, acquired_at_ms = ?3, \
                 expires_at_ms = ?4 WHERE name = ?1 AND epoch = ?5",
                params![name, host_id, now_ms, expires_at_ms, current.epoch],
            )?;
            let lease = load_lease(tx, name)?.ok_or(Failure::NoRows)?;
            Ok(LeaseGrant::Held {
                lease,
                taken_from: (current.holder != host_id).then_some(current.holder),
            })
        })
    }

    fn leave(&self, host_id: &str, now_ms: i64) -> Result<usize> {
        self.write("leave", |tx| {
            let released = tx.execute(
                "UPDATE fleet_leases SET expires_at_ms = ?2 \
                 WHERE holder = ?1 AND expires_at_ms > ?2",
                params![host_id, now_ms],
            )?;
            tx.execute(
                "DELETE FROM fleet_hosts WHERE host_id = ?1",
                params![host_id],
            )?;
            Ok(released)
        })
    }

    fn forget_hosts(&self, silent_since_ms: i64) -> Result<usize> {
        self.write("forget_hosts", |tx| {
            tx.execute(
                "DELETE FROM fleet_hosts WHERE heartbeat_ms < ?1",
                params![silent_since_ms],
            )
        })
    }

    fn fleet(&self) -> Result<(Vec<HostStatus>, Vec<LeaseStatus>)> {
        self.read("fleet", |tx| Ok((hosts(tx)?, leases(tx)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str, started_at_ms: i64, holding: &str, now_ms: i64) -> HostStatus {
        HostStatus {
            host_id: id.to_owned(),
            version: "0.2.0".to_owned(),
            started_at_ms,
            heartbeat_ms: now_ms,
            holding: holding.to_owned(),
            last_event_ms: None,
        }
    }

    backend_tests! {
        fn one_host_holds_a_lease_until_it_expires(store) {
            let granted = store.acquire_lease("poller", "a", 1_000, 10).unwrap();
            assert!(granted.is_held());
            assert_eq!(granted.lease().epoch, 1);
            let refused = store.acquire_lease("poller", "b", 1_000, 500).unwrap();
            assert_eq!(refused, LeaseGrant::Refused { lease: granted.lease().clone() });

            // The holder renews; the lease never moves back.
            let renewed = store.acquire_lease("poller", "a", 1_000, 900).unwrap();
            assert_eq!(renewed.lease().expires_at_ms, 1_900);
            assert_eq!(renewed.lease().epoch, 1);
            assert!(!store.acquire_lease("poller", "b", 1_000, 1_899).unwrap().is_held());

            // Once it expires, another host takes it over, in a new epoch.
            let taken = store.acquire_lease("poller", "b", 1_000, 1_900).unwrap();
            match &taken {
                LeaseGrant::Held { lease, taken_from } => {
                    assert_eq!((lease.holder.as_str(), lease.epoch), ("b", 2));
                    assert_eq!(taken_from.as_deref(), Some("a"));
                }
                other => panic!("{other:?}"),
            }
            assert!(!store.acquire_lease("poller", "a", 1_000, 1_950).unwrap().is_held());

            // Given up by a host leaving, it is free at once.
            store.heartbeat(&host("b", 1, "", 1_950)).unwrap();
            assert_eq!(store.leave("b", 2_000).unwrap(), 1);
            assert_eq!(store.leave("b", 2_000).unwrap(), 0);
            assert!(store.fleet().unwrap().0.is_empty(), "b is forgotten");
            assert!(store.acquire_lease("poller", "a", 1_000, 2_000).unwrap().is_held());
            assert!(store.acquire_lease("poller", "a", 0, 2_000).is_err());
        }
    }

    backend_tests! {
        fn heartbeats_describe_each_host(store) {
            store.heartbeat(&host("a", 1, "poller", 10)).unwrap();
            store.heartbeat(&HostStatus { last_event_ms: Some(9), ..host("b", 2, "", 11) }).unwrap();
            store.heartbeat(&host("a", 1, &"x".repeat(5_000), 20)).unwrap();
            store.acquire_lease("poller", "a", 1_000, 20).unwrap();
            let (hosts, leases) = store.fleet().unwrap();
            assert_eq!(hosts.len(), 2);
            assert_eq!((hosts[0].host_id.as_str(), hosts[0].heartbeat_ms), ("a", 20));
            assert_eq!(hosts[0].holding.len(), MAX_HOLDING_BYTES, "bounded");
            assert_eq!((hosts[0].last_event_ms, hosts[1].last_event_ms), (None, Some(9)));
            store.note_event("a", 15).unwrap();
            store.note_event("b", 8).unwrap();
            store.note_event("nobody", 15).unwrap();
            let (hosts, _) = store.fleet().unwrap();
            assert_eq!((hosts[0].last_event_ms, hosts[1].last_event_ms), (Some(15), Some(9)));
            assert_eq!(hosts.len(), 2);
            assert_eq!(leases[0].holder, "a");
            assert_eq!(store.forget_hosts(15).unwrap(), 1);
            assert_eq!(store.fleet().unwrap().0.len(), 1);
        }
    }
}
