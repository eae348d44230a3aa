//! What a listed Malop is owed: which subscribed plugins still have to see this view of it,
//! and which of its parts must be read for them.
//!
//! A poll's page (or a batch of hinted ids) is answered with one trip to the blocking pool:
//! a [`MarkQuestion`] per Malop, made on the async side, answered against the store, and
//! turned into an [`Owing`].

use crate::health::HealthBook;
use crate::plugins::ServicePlugin;
use riposte_domain::{Malop, MalopId, MalopPart, PluginName, TimestampMs};
use riposte_store::Store;
use riposte_store::prelude::*;
use std::sync::Arc;

/// What one Malop is owed.
pub(crate) struct Owing {
    /// The subscribed plugins that did not handle this view of it and can run now.
    pub runnable: Vec<Arc<ServicePlugin>>,
    /// Whether a subscribed plugin that owes it is paused (it waits for the pause to end).
    pub paused: bool,
    /// The parts to read: those some subscribed plugin reads (sorted). The others are
    /// listed unreadable, and handled marks are read with them missing.
    pub parts: Vec<MalopPart>,
    /// Whether it is in the queue of Malops to read again (due or not, whatever its view): a
    /// read in full takes it off.
    pub queued: bool,
}

/// The handled marks to read for one Malop, asked off the async workers.
pub(crate) struct MarkQuestion {
    id: MalopId,
    last_update: TimestampMs,
    unreadable: Vec<MalopPart>,
    parts: Vec<MalopPart>,
    /// Each subscribed plugin, and whether this process knows it healthy (no pause to read).
    plugins: Vec<(PluginName, bool)>,
}

/// The answer to a [`MarkQuestion`].
pub(crate) struct MarkAnswer {
    /// Per subscribed plugin: `None` if it handled this view, else whether it is paused.
    marks: Vec<Option<bool>>,
    parts: Vec<MalopPart>,
    queued: bool,
}

impl MarkQuestion {
    /// The question for `malop` and the plugins subscribed to it.
    pub(crate) fn new(malop: &Malop, plugins: &[Arc<ServicePlugin>], health: &HealthBook) -> Self {
        Self {
            id: malop.id.clone(),
            last_update: malop.last_update_time,
            unreadable: malop.unreadable.clone(),
            parts: parts_read_by(plugins),
            plugins: plugins
                .iter()
                .map(|p| (p.policy.name.clone(), health.known_healthy(&p.policy.name)))
                .collect(),
        }
    }

    /// Reads the marks. A Malop from a list: whether its parts can be read is not known
    /// yet, unless it waits to be read again (then its last read stands until it is due);
    /// either way the parts nobody reads are missing from the view.
    pub(crate) fn answer(&self, store: &Store, now: i64) -> riposte_store::Result<MarkAnswer> {
        let mut answer = MarkAnswer {
            marks: Vec::with_capacity(self.plugins.len()),
            parts: self.parts.clone(),
            queued: false,
        };
        if self.plugins.is_empty() {
            return Ok(answer);
        }
        answer.queued = self.unreadable.is_empty() && store.is_incomplete(&self.id)?;
        let waiting = if answer.queued {
            store.waiting_parts(&self.id, self.last_update, now)?
        } else {
            None
        };
        let not_read: Vec<MalopPart> = MalopPart::ALL
            .into_iter()
            .filter(|p| !self.parts.contains(p))
            .collect();
        let view = match &waiting {
            Some(parts) => Some(parts.as_slice()),
            None if !self.unreadable.is_empty() => Some(self.unreadable.as_slice()),
            None => (!not_read.is_empty()).then_some(not_read.as_slice()),
        };
        for (name, healthy) in &self.plugins {
            answer.marks.push(
                if store.is_handled(name, &self.id, self.last_update, view)? {
                    None
                } else {
                    Some(!healthy && store.paused_until(name.as_str(), now)?.is_some())
                },
            );
        }
        Ok(answer)
    }
}

impl MarkAnswer {
    /// What the Malop is owed, given the `plugins` subscribed to it (those asked about).
    pub(crate) fn owing(self, plugins: Vec<Arc<ServicePlugin>>) -> Owing {
        let mut owing = Owing {
            runnable: Vec::new(),
            paused: false,
            parts: self.parts,
            queued: self.queued,
        };
        for (plugin, mark) in plugins.into_iter().zip(self.marks) {
            match mark {
                None => {}
                Some(true) => owing.paused = true,
                Some(false) => owing.runnable.push(plugin),
            }
        }
        owing
    }
}

/// The parts some of `plugins` read, sorted.
fn parts_read_by(plugins: &[Arc<ServicePlugin>]) -> Vec<MalopPart> {
    let mut parts: Vec<MalopPart> = plugins
        .iter()
        .flat_map(|p| p.parts_read.iter().copied())
        .collect();
    parts.sort();
    parts.dedup();
    parts
}
