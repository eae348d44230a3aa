//! Counters the listener keeps, for the service's metrics.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a message was dropped. Each reason has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Longer than `max_message_bytes`: a frame or datagram over the limit, or an octet
    /// count announcing more (its bytes are skipped, and the next frame read).
    Oversized,
    /// Cut short: the connection ended or timed out in the middle of a frame.
    Truncated,
    /// Not UTF-8, or holding control characters other than tab.
    Binary,
    /// No CEF record in the message.
    NotCef,
    /// The text before the CEF record is not a whole RFC 5424 or RFC 3164 header (or the
    /// message is empty).
    MalformedSyslog,
    /// The CEF record is malformed (truncated header, unknown version, stray text, ...).
    MalformedCef,
    /// A Malop event without `cs1` labelled `malopId`.
    NoMalopId,
    /// A Malop event whose `cs1` does not have the shape of a Malop id.
    BadMalopId,
    /// Over the per-source message rate.
    RateLimited,
    /// The coalescing table was full: a new Malop's event was dropped, or the source holding
    /// the most entries lost one to a quieter source's new Malop.
    CoalesceOverflow,
}

impl DropReason {
    /// Every reason.
    pub const ALL: [DropReason; 10] = [
        Self::Oversized,
        Self::Truncated,
        Self::Binary,
        Self::NotCef,
        Self::MalformedSyslog,
        Self::MalformedCef,
        Self::NoMalopId,
        Self::BadMalopId,
        Self::RateLimited,
        Self::CoalesceOverflow,
    ];

    /// A stable snake_case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Truncated => "truncated",
            Self::Binary => "binary",
            Self::NotCef => "not_cef",
            Self::MalformedSyslog => "malformed_syslog",
            Self::MalformedCef => "malformed_cef",
            Self::NoMalopId => "no_malop_id",
            Self::BadMalopId => "bad_malop_id",
            Self::RateLimited => "rate_limited",
            Self::CoalesceOverflow => "coalesce_overflow",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Events the listener counts besides drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// Frames and datagrams received from allowed sources.
    MessagesReceived,
    /// Messages that named a Malop and were handed to the coalescer.
    MalopEvents,
    /// Well-formed CEF records that are not Cybereason Malop events (ignored).
    NotMalopEvents,
    /// Malop events merged into a hint already waiting for the same Malop.
    Coalesced,
    /// Hints handed to the consumer.
    HintsDelivered,
    /// TCP and TLS connections accepted.
    ConnectionsAccepted,
    /// TCP and TLS connections closed, for any reason (open = accepted - closed).
    ConnectionsClosed,
    /// Connections refused because their source is not allowed.
    ConnectionsRefusedSource,
    /// Connections refused because `max_connections` or `max_connections_per_source` was
    /// reached.
    ConnectionsRefusedLimit,
    /// Connections closed after `idle_timeout_secs` without a message.
    ConnectionsIdleTimeout,
    /// Connections closed to make room, when every place was taken, for a connection from a
    /// source holding fewer (the longest-silent one of the source holding the most).
    ConnectionsEvicted,
    /// Connections closed because a frame (or the TLS handshake) took longer than
    /// `message_timeout_secs`.
    ConnectionsSlowTimeout,
    /// TLS handshakes that failed (bad or missing client certificate, not TLS, ...).
    TlsHandshakeFailures,
    /// UDP datagrams refused because their source is not allowed.
    DatagramsRefusedSource,
}

impl Event {
    /// Every event.
    pub const ALL: [Event; 14] = [
        Self::MessagesReceived,
        Self::MalopEvents,
        Self::NotMalopEvents,
        Self::Coalesced,
        Self::HintsDelivered,
        Self::ConnectionsAccepted,
        Self::ConnectionsClosed,
        Self::ConnectionsRefusedSource,
        Self::ConnectionsRefusedLimit,
        Self::ConnectionsIdleTimeout,
        Self::ConnectionsEvicted,
        Self::ConnectionsSlowTimeout,
        Self::TlsHandshakeFailures,
        Self::DatagramsRefusedSource,
    ];

    /// A stable snake_case name, for metric names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessagesReceived => "messages_received",
            Self::MalopEvents => "malop_events",
            Self::NotMalopEvents => "not_malop_events",
            Self::Coalesced => "coalesced",
            Self::HintsDelivered => "hints_delivered",
            Self::ConnectionsAccepted => "connections_accepted",
            Self::ConnectionsClosed => "connections_closed",
            Self::ConnectionsRefusedSource => "connections_refused_source",
            Self::ConnectionsRefusedLimit => "connections_refused_limit",
            Self::ConnectionsIdleTimeout => "connections_idle_timeout",
            Self::ConnectionsEvicted => "connections_evicted",
            Self::ConnectionsSlowTimeout => "connections_slow_timeout",
            Self::TlsHandshakeFailures => "tls_handshake_failures",
            Self::DatagramsRefusedSource => "datagrams_refused_source",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The live counters, shared by the listener's tasks; read them with [`Counters::snapshot`].
#[derive(Debug, Default)]
pub struct Counters {
    drops: [AtomicU64; DropReason::ALL.len()],
    events: [AtomicU64; Event::ALL.len()],
}

impl Counters {
    /// New counters at zero, shareable.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn dropped(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self, event: Event) {
        self.events[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> ListenerStats {
        ListenerStats {
            drops: std::array::from_fn(|i| self.drops[i].load(Ordering::Relaxed)),
            events: std::array::from_fn(|i| self.events[i].load(Ordering::Relaxed)),
        }
    }
}

/// A snapshot of the listener's counters (monotonic since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenerStats {
    drops: [u64; DropReason::ALL.len()],
    events: [u64; Event::ALL.len()],
}

impl ListenerStats {
    /// Messages dropped for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Messages dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// How many times `event` happened.
    pub fn count(&self, event: Event) -> u64 {
        self.events[event as usize]
    }

    /// Every drop counter, for export.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.dropped(r)))
    }

    /// Every event counter, for export.
    pub fn events(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        Event::ALL.into_iter().map(|e| (e, self.count(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_match_declaration_order() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        let c = Counters::new();
        c.dropped(DropReason::BadMalopId);
        c.count(Event::Coalesced);
        c.count(Event::Coalesced);
        let s = c.snapshot();
        assert_eq!(s.dropped(DropReason::BadMalopId), 1);
        assert_eq!(s.dropped_total(), 1);
        assert_eq!(s.count(Event::Coalesced), 2);
    }
}
