//! Quotas that protect the EDR server and the host from a plugin (G11): its queries
//! (`get-malop`, `list-malops` that reach the server) and its kv writes, counted per
//! invocation and per sliding minute; and its audited calls (queries, actions, status
//! reads), counted per invocation, so that a flood of refused calls cannot bloat the audit
//! trail.
//!
//! The per-minute windows are kept in memory by one [`QuotaBook`] per process, shared by all
//! invocations (so staying under its own time limit does not make a flood free); the
//! per-invocation counts by each invocation's [`InvocationQuotas`]. A window holds at most
//! its limit of timestamps, so the book's memory is bounded by the configuration.

use crate::settings::Quotas;
use riposte_domain::{PluginName, TimestampMs};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// What a quota counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaKind {
    /// `get-malop` and `list-malops` calls that reach the server.
    Queries,
    /// `kv.set` and `kv.delete` calls.
    KvWrites,
    /// Calls that are audited: queries, actions and `remediation-status`.
    Calls,
}

impl QuotaKind {
    fn index(self) -> usize {
        match self {
            Self::Queries => 0,
            Self::KvWrites => 1,
            Self::Calls => 2,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Self::Queries => "queries to the server (get-malop, list-malops)",
            Self::KvWrites => "kv writes",
            Self::Calls => "audited calls (queries, actions, status reads)",
        }
    }
}

/// The window a quota counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaWindow {
    /// One invocation.
    Invocation,
    /// Any 60 seconds, across the plugin's invocations.
    Minute,
}

/// A quota that refused a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct QuotaRefusal {
    /// What it counts.
    pub kind: QuotaKind,
    /// Over which window.
    pub window: QuotaWindow,
    /// Its limit (the configuration key says which).
    pub max: u32,
}

impl fmt::Display for QuotaRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (per, key) = match (self.kind, self.window) {
            (QuotaKind::Queries, QuotaWindow::Invocation) => {
                ("invocation", "queries_per_invocation")
            }
            (QuotaKind::Queries, QuotaWindow::Minute) => ("minute", "queries_per_minute"),
            (QuotaKind::KvWrites, QuotaWindow::Invocation) => {
                ("invocation", "kv_writes_per_invocation")
            }
            (QuotaKind::KvWrites, QuotaWindow::Minute) => ("minute", "kv_writes_per_minute"),
            (QuotaKind::Calls, _) => ("invocation", "calls_per_invocation"),
        };
        write!(
            f,
            "at most {} {} per {per} (plugins.quotas.{key}), all used",
            self.max,
            self.kind.words()
        )
    }
}

/// What one invocation has used of its quotas.
#[derive(Debug, Default)]
pub struct InvocationQuotas {
    used: [AtomicU32; 3],
    refused: [AtomicU32; 3],
}

impl InvocationQuotas {
    /// Units of `kind` used so far in the invocation.
    pub fn used(&self, kind: QuotaKind) -> u32 {
        self.used[kind.index()].load(Ordering::Relaxed)
    }

    /// Calls of `kind` refused so far in the invocation for lack of quota.
    pub fn refused(&self, kind: QuotaKind) -> u32 {
        self.refused[kind.index()].load(Ordering::Relaxed)
    }
}

/// The per-minute windows of every plugin of a process.
#[derive(Debug, Default)]
pub struct QuotaBook {
    windows: Mutex<HashMap<(PluginName, QuotaKind), VecDeque<TimestampMs>>>,
}

const MINUTE_MS: TimestampMs = 60_000;

impl QuotaBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one unit of `kind` for `plugin` at `now_ms`, from the invocation's count and the
    /// plugin's minute window, both or neither.
    pub fn take(
        &self,
        plugin: &PluginName,
        quotas: &Quotas,
        invocation: &InvocationQuotas,
        kind: QuotaKind,
        now_ms: TimestampMs,
    ) -> Result<(), QuotaRefusal> {
        let (per_invocation, per_minute) = match kind {
            QuotaKind::Queries => (quotas.queries_per_invocation, quotas.queries_per_minute),
            QuotaKind::KvWrites => (quotas.kv_writes_per_invocation, quotas.kv_writes_per_minute),
            QuotaKind::Calls => (quotas.calls_per_invocation, u32::MAX),
        };
        let refusal = |window, max| {
            invocation.refused[kind.index()].fetch_add(1, Ordering::Relaxed);
            QuotaRefusal { kind, window, max }
        };
        let count = &invocation.used[kind.index()];
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < per_invocation).then_some(n + 1)
            })
            .map_err(|_| refusal(QuotaWindow::Invocation, per_invocation))?;
        if per_minute == u32::MAX {
            return Ok(());
        }
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = windows.entry((plugin.clone(), kind)).or_default();
        while window.front().is_some_and(|t| *t <= now_ms - MINUTE_MS) {
            window.pop_front();
        }
        if window.len() >= per_minute as usize {
            count.fetch_sub(1, Ordering::AcqRel);
            return Err(refusal(QuotaWindow::Minute, per_minute));
        }
        window.push_back(now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas() -> Quotas {
        Quotas {
            queries_per_invocation: 3,
            queries_per_minute: 5,
            kv_writes_per_invocation: 1,
            kv_writes_per_minute: 10,
            calls_per_invocation: 2,
        }
    }

    #[test]
    fn per_invocation_and_per_minute_both_bind() {
        let book = QuotaBook::new();
        let p = PluginName::new("p");
        let q = quotas();
        let first = InvocationQuotas::default();
        for t in 0..3 {
            book.take(&p, &q, &first, QuotaKind::Queries, t).unwrap();
        }
        let refused = book
            .take(&p, &q, &first, QuotaKind::Queries, 3)
            .unwrap_err();
        assert_eq!(refused.window, QuotaWindow::Invocation);
        assert!(
            refused.to_string().contains("queries_per_invocation"),
            "{refused}"
        );
        // A second invocation in the same minute: two more, then the minute is spent.
        let second = InvocationQuotas::default();
        book.take(&p, &q, &second, QuotaKind::Queries, 10).unwrap();
        book.take(&p, &q, &second, QuotaKind::Queries, 11).unwrap();
        let refused = book
            .take(&p, &q, &second, QuotaKind::Queries, 12)
            .unwrap_err();
        assert_eq!(refused.window, QuotaWindow::Minute);
        assert_eq!(
            second.used(QuotaKind::Queries),
            2,
            "the refusal was given back"
        );
        // Another plugin and another kind have their own windows.
        book.take(
            &PluginName::new("other"),
            &q,
            &InvocationQuotas::default(),
            QuotaKind::Queries,
            12,
        )
        .unwrap();
        book.take(&p, &q, &second, QuotaKind::KvWrites, 12).unwrap();
        assert_eq!(second.refused(QuotaKind::Queries), 1);
        // Audited calls are counted per invocation only.
        let calls = InvocationQuotas::default();
        book.take(&p, &q, &calls, QuotaKind::Calls, 0).unwrap();
        book.take(&p, &q, &calls, QuotaKind::Calls, 0).unwrap();
        let refused = book.take(&p, &q, &calls, QuotaKind::Calls, 0).unwrap_err();
        assert!(
            refused.to_string().contains("calls_per_invocation"),
            "{refused}"
        );
        // A minute after the first query, it no longer counts.
        let third = InvocationQuotas::default();
        book.take(&p, &q, &third, QuotaKind::Queries, MINUTE_MS)
            .unwrap();
        assert!(
            book.take(&p, &q, &third, QuotaKind::Queries, MINUTE_MS)
                .is_err()
        );
    }
}
