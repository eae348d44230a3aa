//! Per-Malop coalescing and rate limiting between the listener and its consumer.
//!
//! The consumer sees at most one hint per Malop per interval (unless the Malop's interval was
//! forgotten to make room in a full table, below): the first event for a Malop
//! is ready at once; events that arrive while that hint waits for the consumer replace it
//! (the latest wins); events that arrive within the interval after a hint was handed over
//! are merged into one pending hint, handed over when the interval ends. The interval starts
//! when the consumer takes the hint, not when the event arrived, so a slow consumer cannot
//! receive two hints for one Malop closer together than the interval.
//!
//! Senders are served fairly, by [`Share`]: each connection's source (an IPv4 address or an
//! IPv6 /64, [`source_key`]) has a share, and all datagrams together have one (anyone can
//! forge a datagram's address, so a thousand forged addresses are still one share). Ready
//! hints are handed over in turn by share, so a flood from one sender does not queue ahead
//! of another's events. The table of Malops (waiting, or in their interval) holds at most
//! `capacity` entries; when it is full, an event for a new Malop from a share holding at
//! least two fewer entries than the largest takes one of that share's places: its oldest
//! Malop in its interval with no later event pending (only its rate limit is forgotten: an
//! event for it is then handed over at once), else its newest waiting hint, else its oldest
//! Malop in its interval (with the event pending). Otherwise the new event is dropped.
//! Either way the loss is counted ([`DropReason::CoalesceOverflow`]) and the poll loop is
//! the safety net. So a flood of forged ids can neither fill the table against a quieter
//! sender nor take more than its share. Nothing is dropped because the consumer is slow:
//! hints wait in the table (at most one per Malop) and the listener never waits for it.

use crate::malop::{MalopHint, MalopId};
use crate::stats::{Counters, DropReason, Event};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Whose share of the coalescing table an event counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Share {
    /// A connection's source ([`source_key`]): it cannot be forged.
    ///
    /// [`source_key`]: crate::malop::source_key
    Stream(IpAddr),
    /// Every datagram, whatever address it carries.
    Datagrams,
}

#[derive(Debug)]
struct Entry {
    /// The share the Malop counts in (the first event's).
    source: Share,
    /// A hint waiting for the consumer (the Malop is then in its source's `ready`).
    ready: Option<MalopHint>,
    /// A hint merged during the interval after the last hand-over.
    pending: Option<MalopHint>,
    /// Which hand-over the interval runs from (records of earlier intervals are stale).
    handed_over: u64,
}

/// One source's share of the table.
#[derive(Debug, Default)]
struct Source {
    /// Its Malops whose `ready` hint waits for the consumer, oldest first.
    ready: VecDeque<MalopId>,
    /// Its Malops in their interval, oldest hand-over first (with the hand-over's number;
    /// records of Malops forgotten since are skipped).
    cooling: VecDeque<(u64, MalopId)>,
    /// Its entries in the table.
    tracked: usize,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<MalopId, Entry>,
    sources: HashMap<Share, Source>,
    /// Shares by their number of entries, to find the largest.
    by_size: BTreeSet<(usize, Share)>,
    /// Shares with ready hints, in turn order.
    turns: VecDeque<Share>,
    /// Malops in their interval after a hand-over, by deadline (the interval is constant,
    /// so deadlines are in push order), with the hand-over's number.
    cooling: VecDeque<(Instant, u64, MalopId)>,
    /// Hand-overs so far.
    handed_over: u64,
    closed: bool,
}

impl State {
    /// Changes `source`'s entry count by one, keeping `by_size` in step; a source with no
    /// entries left is forgotten.
    fn resize(&mut self, source: Share, grow: bool) {
        let tracked = self.sources.get(&source).map_or(0, |s| s.tracked);
        self.by_size.remove(&(tracked, source));
        let tracked = if grow { tracked + 1 } else { tracked - 1 };
        if tracked == 0 {
            self.sources.remove(&source);
            return;
        }
        self.by_size.insert((tracked, source));
        self.sources.entry(source).or_default().tracked = tracked;
    }

    /// Queues `id`'s ready hint behind its source's others, giving the source a turn if it
    /// had none.
    fn push_ready(&mut self, source: Share, id: MalopId) {
        let queue = &mut self.sources.entry(source).or_default().ready;
        if queue.is_empty() {
            self.turns.push_back(source);
        }
        queue.push_back(id);
    }

    fn insert(&mut self, source: Share, hint: MalopHint) {
        let id = hint.malop_id.clone();
        self.resize(source, true);
        self.entries.insert(
            id.clone(),
            Entry {
                source,
                ready: Some(hint),
                pending: None,
                handed_over: 0,
            },
        );
        self.push_ready(source, id);
    }

    fn forget(&mut self, id: &MalopId) {
        if let Some(entry) = self.entries.remove(id) {
            self.resize(entry.source, false);
        }
    }

    /// Makes room for an entry of `source` in a full table by taking one from the largest
    /// share, if that holds at least two more than `source` does. Returns whether it did.
    fn evict_for(&mut self, source: Share) -> bool {
        let Some(&(largest, victim)) = self.by_size.last() else {
            return false;
        };
        let own = self.sources.get(&source).map_or(0, |s| s.tracked);
        if largest < own + 2 {
            return false;
        }
        let Some(id) = self.victim_of(victim) else {
            return false;
        };
        self.forget(&id);
        true
    }

    /// The entry of `share` to forget for another share's: its oldest Malop in its interval
    /// with nothing pending, else its newest waiting hint, else its oldest Malop in its
    /// interval. Taken out of the share's queues.
    fn victim_of(&mut self, share: Share) -> Option<MalopId> {
        let entries = &self.entries;
        let queues = self.sources.get_mut(&share)?;
        let cooling = |(number, id): &(u64, MalopId), pending: bool| {
            entries.get(id).is_some_and(|e| {
                e.handed_over == *number && e.ready.is_none() && e.pending.is_some() == pending
            })
        };
        if let Some(at) = queues.cooling.iter().position(|r| cooling(r, false)) {
            return queues.cooling.remove(at).map(|(_, id)| id);
        }
        if let Some(id) = queues.ready.pop_back() {
            if queues.ready.is_empty() {
                self.turns.retain(|s| *s != share);
            }
            return Some(id);
        }
        let at = queues.cooling.iter().position(|r| cooling(r, true))?;
        queues.cooling.remove(at).map(|(_, id)| id)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    notify: Notify,
    counters: Arc<Counters>,
    interval: Duration,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state inconsistent in a way that
        // matters more than losing hints; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves Malops whose interval ended: pending hints become ready, the rest are forgotten.
    fn expire(&self, state: &mut State, now: Instant) -> bool {
        let mut readied = false;
        while let Some((deadline, _, _)) = state.cooling.front() {
            if *deadline > now {
                break;
            }
            let (_, number, id) = state.cooling.pop_front().expect("front exists");
            let Some(entry) = state.entries.get_mut(&id) else {
                continue;
            };
            if entry.handed_over != number || entry.ready.is_some() {
                continue;
            }
            let source = entry.source;
            if let Some(share) = state.sources.get_mut(&source) {
                while share.cooling.front().is_some_and(|(n, _)| *n <= number) {
                    share.cooling.pop_front();
                }
            }
            match entry.pending.take() {
                Some(hint) => {
                    entry.ready = Some(hint);
                    state.push_ready(source, id);
                    readied = true;
                }
                None => state.forget(&id),
            }
        }
        readied
    }

    fn take(&self, state: &mut State, now: Instant) -> Option<MalopHint> {
        self.expire(state, now);
        while let Some(source) = state.turns.pop_front() {
            let Some(share) = state.sources.get_mut(&source) else {
                continue;
            };
            let Some(id) = share.ready.pop_front() else {
                continue;
            };
            if !share.ready.is_empty() {
                state.turns.push_back(source);
            }
            state.handed_over += 1;
            let number = state.handed_over;
            let Some(entry) = state.entries.get_mut(&id) else {
                continue;
            };
            let Some(hint) = entry.ready.take() else {
                continue;
            };
            entry.handed_over = number;
            state
                .cooling
                .push_back((now + self.interval, number, id.clone()));
            if let Some(share) = state.sources.get_mut(&source) {
                share.cooling.push_back((number, id));
            }
            self.counters.count(Event::HintsDelivered);
            return Some(hint);
        }
        None
    }
}

/// The listener's side: hands Malop events in.
#[derive(Clone, Debug)]
pub(crate) struct Coalescer {
    shared: Arc<Shared>,
}

impl Coalescer {
    /// A coalescer and the receiver its hints go to.
    pub(crate) fn new(
        interval: Duration,
        capacity: usize,
        counters: Arc<Counters>,
    ) -> (Self, HintReceiver) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            counters,
            interval,
            capacity,
        });
        (
            Self {
                shared: shared.clone(),
            },
            HintReceiver { shared },
        )
    }

    /// Takes one Malop event in, counted in `share`; never waits for the consumer.
    pub(crate) fn ingest(&self, hint: MalopHint, share: Share) {
        self.ingest_at(hint, share, Instant::now());
    }

    /// [`Coalescer::ingest`] at a given time (tests drive the clock through it).
    pub(crate) fn ingest_at(&self, hint: MalopHint, share: Share, now: Instant) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        let mut wake = shared.expire(&mut state, now);
        if let Some(entry) = state.entries.get_mut(&hint.malop_id) {
            let slot = if entry.ready.is_some() {
                &mut entry.ready
            } else {
                &mut entry.pending
            };
            if slot.replace(hint).is_some() {
                shared.counters.count(Event::Coalesced);
            }
        } else {
            if state.entries.len() >= shared.capacity {
                // Either the largest share loses an entry or this event is lost.
                shared.counters.dropped(DropReason::CoalesceOverflow);
                if !state.evict_for(share) {
                    return;
                }
            }
            state.insert(share, hint);
            wake = true;
        }
        shared.counters.count(Event::MalopEvents);
        drop(state);
        if wake {
            shared.notify.notify_one();
        }
    }

    /// Ends the stream: the receiver returns the hints already ready, then `None`. Hints
    /// still inside their interval are discarded (the poll loop covers them).
    pub(crate) fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.notify.notify_one();
    }
}

/// Why [`HintReceiver::try_recv`] returned no hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No hint is ready now.
    #[error("no Malop hint is ready")]
    Empty,
    /// The listener was shut down and every ready hint was taken.
    #[error("the syslog listener has shut down")]
    Closed,
}

/// The consumer's side: the stream of Malop hints, at most one per Malop per interval.
///
/// - The first event for a Malop is ready at once; events arriving while its hint waits for
///   the consumer replace it (the latest event wins); events arriving within the interval
///   after the consumer took a hint are merged into one, ready when the interval ends. The
///   interval starts when the consumer takes a hint, so even a slow consumer never gets two
///   hints for one Malop closer together than the interval.
/// - Between the listener and the consumer there is no channel to fill: ready hints wait in
///   a table of at most `max_tracked_malops` Malops (waiting, or inside their interval). A
///   slow consumer therefore costs nothing but that table, and the listener never waits
///   for it; taking a hint never waits for the listener beyond a short lock.
/// - Ready hints are handed over in turn by share (a connection's source; all datagrams
///   together, whose addresses anyone can forge), so one sender's flood does not delay
///   another's events.
/// - When the table is full, an event for a new Malop takes the place of an entry of the
///   share holding the most (its oldest Malop in its interval with nothing pending, else its
///   newest waiting hint, else its oldest Malop in its interval) if that share holds at
///   least two more than the event's; otherwise the event is dropped. Either loss is counted
///   ([`DropReason::CoalesceOverflow`]); the poll loop is the safety net for it. A flood of
///   forged ids thus cannot fill the table against a quieter sender.
#[derive(Debug)]
pub struct HintReceiver {
    shared: Arc<Shared>,
}

impl HintReceiver {
    /// The next hint; `None` once the listener has shut down and no hint is ready.
    pub async fn recv(&mut self) -> Option<MalopHint> {
        loop {
            let notified = self.shared.notify.notified();
            let deadline = {
                let mut state = self.shared.lock();
                if let Some(hint) = self.shared.take(&mut state, Instant::now()) {
                    return Some(hint);
                }
                if state.closed {
                    return None;
                }
                state.cooling.front().map(|(deadline, _, _)| *deadline)
            };
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The next hint if one is ready now.
    pub fn try_recv(&mut self) -> Result<MalopHint, TryRecvError> {
        self.try_recv_at(Instant::now())
    }

    fn try_recv_at(&mut self, now: Instant) -> Result<MalopHint, TryRecvError> {
        let mut state = self.shared.lock();
        match self.shared.take(&mut state, now) {
            Some(hint) => Ok(hint),
            None if state.closed => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Malops in the coalescing table now (waiting, or inside their interval): a gauge.
    pub fn tracked_malops(&self) -> usize {
        self.shared.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::malop::{MalopEvent, source_key};
    use std::time::SystemTime;

    const INTERVAL: Duration = Duration::from_secs(5);
    const MS: Duration = Duration::from_millis(1);

    fn hint(id: &str, event: MalopEvent) -> MalopHint {
        MalopHint {
            malop_id: MalopId::parse(id).unwrap(),
            event,
            source: "127.0.0.1:514".parse().unwrap(),
            received_at: SystemTime::now(),
        }
    }

    fn hint_from(id: &str, source: &str) -> (MalopHint, Share) {
        let hint = MalopHint {
            source: format!("{source}:514").parse().unwrap(),
            ..hint(id, MalopEvent::Created)
        };
        let share = Share::Stream(source_key(hint.source.ip()));
        (hint, share)
    }

    /// A connection's event from the default test source.
    fn streamed(hint: MalopHint) -> (MalopHint, Share) {
        let share = Share::Stream(source_key(hint.source.ip()));
        (hint, share)
    }

    fn datagram(id: &str) -> (MalopHint, Share) {
        (hint(id, MalopEvent::Created), Share::Datagrams)
    }

    fn feed(c: &Coalescer, (hint, share): (MalopHint, Share), now: Instant) {
        c.ingest_at(hint, share, now);
    }

    /// A coalescer, its receiver, its counters and a start time to drive the clock from.
    fn setup(capacity: usize) -> (Coalescer, HintReceiver, Arc<Counters>, Instant) {
        let counters = Counters::new();
        let (c, r) = Coalescer::new(INTERVAL, capacity, counters.clone());
        (c, r, counters, Instant::now())
    }

    fn id_of(r: &mut HintReceiver, now: Instant) -> String {
        r.try_recv_at(now).unwrap().malop_id.into_string()
    }

    #[test]
    fn first_at_once_then_one_merged_per_interval() {
        let (c, mut r, counters, t0) = setup(10);
        feed(&c, streamed(hint("11.1", MalopEvent::Created)), t0);
        assert_eq!(r.try_recv_at(t0).unwrap().event, MalopEvent::Created);
        for _ in 0..100 {
            feed(
                &c,
                streamed(hint("11.1", MalopEvent::MachineInformation)),
                t0 + MS,
            );
        }
        feed(&c, streamed(hint("11.1", MalopEvent::Updated)), t0 + 2 * MS);
        assert_eq!(r.try_recv_at(t0 + INTERVAL - MS), Err(TryRecvError::Empty));
        let second = r.try_recv_at(t0 + INTERVAL).unwrap();
        assert_eq!(second.event, MalopEvent::Updated, "the latest event wins");
        assert_eq!(r.try_recv_at(t0 + INTERVAL), Err(TryRecvError::Empty));
        let s = counters.snapshot();
        assert_eq!(s.count(Event::MalopEvents), 102);
        assert_eq!(s.count(Event::Coalesced), 100);
        assert_eq!(s.count(Event::HintsDelivered), 2);
        // The interval after the second hand-over ends with nothing pending: forgotten.
        assert_eq!(r.try_recv_at(t0 + 2 * INTERVAL), Err(TryRecvError::Empty));
        assert_eq!(r.tracked_malops(), 0);
    }

    #[test]
    fn a_slow_consumer_gets_the_latest_and_the_interval_starts_at_hand_over() {
        let (c, mut r, _, t0) = setup(10);
        feed(&c, streamed(hint("11.1", MalopEvent::Created)), t0);
        let handed = t0 + 3 * INTERVAL;
        feed(&c, streamed(hint("11.1", MalopEvent::Updated)), handed);
        assert_eq!(r.try_recv_at(handed).unwrap().event, MalopEvent::Updated);
        feed(
            &c,
            streamed(hint("11.1", MalopEvent::MachineInformation)),
            handed + MS,
        );
        assert_eq!(
            r.try_recv_at(handed + INTERVAL - MS),
            Err(TryRecvError::Empty)
        );
        assert_eq!(
            r.try_recv_at(handed + INTERVAL).unwrap().event,
            MalopEvent::MachineInformation
        );
    }

    #[test]
    fn distinct_malops_are_independent_and_in_arrival_order() {
        let (c, mut r, _, t0) = setup(10);
        for id in ["11.1", "11.2", "11.3"] {
            feed(&c, streamed(hint(id, MalopEvent::Created)), t0);
        }
        for id in ["11.1", "11.2", "11.3"] {
            assert_eq!(id_of(&mut r, t0), id);
        }
    }

    #[test]
    fn a_full_table_drops_the_newest_and_keeps_the_waiting() {
        let (c, mut r, counters, t0) = setup(2);
        for id in ["11.1", "11.2", "11.3"] {
            feed(&c, streamed(hint(id, MalopEvent::Created)), t0);
        }
        assert_eq!(counters.snapshot().dropped(DropReason::CoalesceOverflow), 1);
        assert_eq!(id_of(&mut r, t0), "11.1");
        assert_eq!(id_of(&mut r, t0), "11.2");
        assert_eq!(r.try_recv_at(t0), Err(TryRecvError::Empty));
        // Once their intervals end with nothing pending, room is made again.
        feed(
            &c,
            streamed(hint("11.3", MalopEvent::Created)),
            t0 + INTERVAL,
        );
        assert_eq!(id_of(&mut r, t0 + INTERVAL), "11.3");
    }

    const FLOODER: &str = "203.0.113.9";
    const SERVER: &str = "198.51.100.7";

    #[test]
    fn a_flooded_table_still_takes_a_quieter_sources_new_malop() {
        let (c, mut r, counters, t0) = setup(4);
        for i in 1..=4 {
            feed(&c, hint_from(&format!("11.{i}"), FLOODER), t0);
        }
        // The flooder's hints are taken: the table is full of Malops in their interval.
        for i in 1..=4 {
            assert_eq!(id_of(&mut r, t0), format!("11.{i}"));
        }
        feed(&c, hint_from("11.5", FLOODER), t0 + MS);
        assert_eq!(r.try_recv_at(t0 + MS), Err(TryRecvError::Empty));
        feed(&c, hint_from("22.1", SERVER), t0 + MS);
        assert_eq!(id_of(&mut r, t0 + MS), "22.1", "the server's Malop got in");
        assert_eq!(counters.snapshot().dropped(DropReason::CoalesceOverflow), 2);
        assert_eq!(r.tracked_malops(), 4);
        // The flooder's oldest was forgotten: an event for it is ready again at once (the
        // global pace of bites still bounds the queries), its others still cool.
        feed(&c, hint_from("11.2", FLOODER), t0 + 2 * MS);
        assert_eq!(r.try_recv_at(t0 + 2 * MS), Err(TryRecvError::Empty));
        feed(&c, hint_from("11.1", SERVER), t0 + 2 * MS);
        assert_eq!(id_of(&mut r, t0 + 2 * MS), "11.1");
    }

    #[test]
    fn a_source_never_loses_an_entry_to_one_as_large() {
        let (c, mut r, counters, t0) = setup(4);
        for (id, source) in [("11.1", FLOODER), ("11.2", FLOODER), ("22.1", SERVER)] {
            feed(&c, hint_from(id, source), t0);
        }
        feed(&c, hint_from("22.2", SERVER), t0);
        // Two each: the server's third Malop would leave the flooder smaller than it.
        feed(&c, hint_from("22.3", SERVER), t0);
        assert_eq!(counters.snapshot().dropped(DropReason::CoalesceOverflow), 1);
        let mut taken: Vec<String> = (0..4).map(|_| id_of(&mut r, t0)).collect();
        assert_eq!(r.try_recv_at(t0), Err(TryRecvError::Empty));
        taken.sort();
        assert_eq!(taken, ["11.1", "11.2", "22.1", "22.2"]);
    }

    #[test]
    fn waiting_hints_are_dropped_newest_first_when_none_cools() {
        let (c, mut r, _, t0) = setup(4);
        for i in 1..=4 {
            feed(&c, hint_from(&format!("11.{i}"), FLOODER), t0);
        }
        feed(&c, hint_from("22.1", SERVER), t0);
        let mut taken: Vec<String> = (0..4).map(|_| id_of(&mut r, t0)).collect();
        taken.sort();
        assert_eq!(taken, ["11.1", "11.2", "11.3", "22.1"]);
    }

    /// Datagrams from any number of addresses are one share: a forged flood takes places
    /// from the server only down to half of the table, and never its pending events first.
    #[test]
    fn forged_datagrams_are_one_share() {
        let (c, mut r, _, t0) = setup(4);
        for i in 1..=4 {
            feed(&c, hint_from(&format!("22.{i}"), SERVER), t0);
            assert_eq!(id_of(&mut r, t0), format!("22.{i}"));
        }
        // 22.1 has an event pending; 22.2 to 22.4 only their rate limits.
        feed(&c, hint_from("22.1", SERVER), t0 + MS);
        for i in 1..=50 {
            feed(&c, datagram(&format!("11.{i}")), t0 + MS);
        }
        assert_eq!(r.tracked_malops(), 4);
        // Two places went to the datagrams (22.2, then 22.3); 22.1 kept its pending event.
        assert_eq!(id_of(&mut r, t0 + MS), "11.1");
        assert_eq!(id_of(&mut r, t0 + MS), "11.2");
        assert_eq!(r.try_recv_at(t0 + MS), Err(TryRecvError::Empty));
        assert_eq!(
            r.try_recv_at(t0 + INTERVAL).unwrap().malop_id.as_str(),
            "22.1"
        );
    }

    #[test]
    fn sources_take_turns() {
        let (c, mut r, _, t0) = setup(100);
        for i in 1..=50 {
            feed(&c, hint_from(&format!("11.{i}"), FLOODER), t0);
        }
        feed(&c, hint_from("22.1", SERVER), t0);
        feed(&c, hint_from("22.2", SERVER), t0);
        let first: Vec<String> = (0..4).map(|_| id_of(&mut r, t0)).collect();
        assert_eq!(first, ["11.1", "22.1", "11.2", "22.2"]);
        assert_eq!(id_of(&mut r, t0), "11.3");
        // An IPv6 sender is one source per /64, however many addresses it uses.
        for i in 1..=3 {
            feed(
                &c,
                hint_from(&format!("33.{i}"), &format!("[2001:db8::{i}]")),
                t0,
            );
        }
        feed(&c, hint_from("22.3", SERVER), t0);
        let next: Vec<String> = (0..3).map(|_| id_of(&mut r, t0)).collect();
        assert_eq!(next, ["11.4", "33.1", "22.3"]);
    }

    #[test]
    fn a_forgotten_interval_does_not_end_a_later_one_early() {
        let (c, mut r, _, t0) = setup(4);
        for i in 1..=4 {
            feed(&c, hint_from(&format!("11.{i}"), FLOODER), t0);
            assert_eq!(id_of(&mut r, t0), format!("11.{i}"));
        }
        feed(&c, hint_from("22.1", SERVER), t0 + MS);
        assert_eq!(id_of(&mut r, t0 + MS), "22.1");
        // 11.1's interval was forgotten to make room; it comes back and is handed over again.
        feed(&c, hint_from("11.1", SERVER), t0 + 2 * MS);
        assert_eq!(id_of(&mut r, t0 + 2 * MS), "11.1");
        // When its first interval would have ended, its second has not.
        feed(
            &c,
            streamed(hint("11.1", MalopEvent::Updated)),
            t0 + INTERVAL + MS,
        );
        assert_eq!(r.try_recv_at(t0 + INTERVAL + MS), Err(TryRecvError::Empty));
        let second = r.try_recv_at(t0 + INTERVAL + 2 * MS).unwrap();
        assert_eq!(second.event, MalopEvent::Updated);
    }

    #[tokio::test]
    async fn close_ends_the_stream_after_ready_hints() {
        let (c, mut r, _, _) = setup(10);
        c.ingest(hint("11.1", MalopEvent::Created), Share::Datagrams);
        c.close();
        assert!(r.recv().await.is_some());
        assert_eq!(r.recv().await, None);
        assert_eq!(r.try_recv(), Err(TryRecvError::Closed));
    }

    #[tokio::test]
    async fn recv_wakes_on_ingest() {
        let (c, mut r, _, _) = setup(10);
        let task = tokio::spawn(async move { r.recv().await });
        tokio::task::yield_now().await;
        c.ingest(hint("11.7", MalopEvent::Created), Share::Datagrams);
        assert_eq!(task.await.unwrap().unwrap().malop_id.as_str(), "11.7");
    }
}
