//! Syslog for riposte, in both directions.
//!
//! **In**: a [`SyslogListener`] receives the CEF events a Cybereason server forwards over
//! syslog (TCP with RFC 6587 framing, TLS, UDP; RFC 5424, RFC 3164 or no header; CEF 0 and 1)
//! and turns each Malop event into a [`MalopHint`] on a [`HintReceiver`].
//!
//! **Out**: [`format`](mod@format) writes CEF Malop events as a Cybereason server does (for the
//! simulator) and audit records as RFC 5424 messages with a JSON or CEF payload (for the SIEM
//! export); a [`SyslogSender`] delivers them over TCP, TLS or UDP, reconnecting with backoff.
//!
//! # What is trusted: nothing but a Malop id, as a hint
//!
//! Syslog is not authenticated: anyone who can reach the listener can forge a message. So a
//! message is never data to act on. From a message that is a Cybereason Malop event (vendor
//! `Cybereason`, class `Malop` or a name starting with `Malop `), the listener keeps only the
//! Malop id from `cs1` labelled `malopId` (any case), after checking its shape ([`MalopId`]),
//! and the event kind as a closed enum ([`MalopEvent`]). The hint adds what the listener saw
//! itself: the peer address and the time of receipt. Every other field (machines, users,
//! severities, links, times) is discarded unread; a consumer fetches the Malop through the
//! authenticated API and decides on what the API returns. The worst a forger can do is make
//! riposte look at a Malop, at most once per Malop per coalescing interval.
//!
//! # Bounds
//!
//! Everything a sender controls is bounded (defaults in [`config::defaults`]):
//! - message size (`max_message_bytes`, default 8192): longer frames and datagrams are
//!   dropped; the bytes of an octet-counted message announcing more are skipped unread, and
//!   the next frame is read ([`framing`]);
//! - connections: at most `max_connections` at once and `max_connections_per_source` per
//!   source (an IPv4 address or an IPv6 /64); when all are taken, a source holding at least
//!   two fewer than the largest takes the place of that source's longest-silent connection;
//!   a connection idle for `idle_timeout_secs` is closed, and a frame or TLS handshake must
//!   complete within `message_timeout_secs` of its first byte (slow senders);
//! - rate: `rate_per_source` messages per second with a burst of `burst_per_source` (kept
//!   apart for datagrams, whose source can be forged, and for connections), for at
//!   most `max_sources` tracked addresses (the least recently seen makes room for a new
//!   one); excess messages are dropped;
//! - sources: `allowed_sources` (addresses and CIDR networks) refuses others at accept or per
//!   datagram;
//! - hints: at most one per Malop per `coalesce_interval_ms`, at most `max_tracked_malops`
//!   Malops tracked, shared fairly by sources: see [`HintReceiver`] for the policy.
//!
//! Malformed, truncated, binary and oversized messages are dropped, never a panic, and every
//! drop is counted by reason ([`DropReason`], read through [`SyslogListener::stats`]). Log
//! lines name the peer and the reason, never the message's content.

pub mod cef;
mod coalesce;
pub mod config;
pub mod format;
pub mod framing;
mod listener;
mod malop;
pub mod parse;
mod sender;
mod stats;
mod tls;

pub use coalesce::{HintReceiver, TryRecvError};
pub use config::{
    ConfigProblem, Framing, ListenerConfig, SenderConfig, SenderTransport, SourceNet,
    TlsListenerConfig,
};
pub use listener::{BoundAddrs, ListenerError, SyslogListener};
pub use malop::{MAX_MALOP_ID_LEN, MalopEvent, MalopHint, MalopId, MalopIdError};
pub use sender::{OutgoingMessage, SendError, SenderError, SenderStats, SyslogSender};
pub use stats::{Counters, DropReason, Event, ListenerStats};
pub use tls::TlsError;
