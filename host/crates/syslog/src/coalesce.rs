//! Per-Malop coalescing and rate limiting between the listener and its consumer.
//!
//! The consumer sees at most one hint per Malop per interval: the first event for a Malop
//! is ready at once; events that arrive while that hint waits for the consumer replace it
//! (the latest wins); events that arrive within the interval after a hint was handed over
//! are merged into one pending hint, handed over when the interval ends. The interval starts
//! when the consumer takes the hint, not when the event arrived, so a slow consumer cannot
//! receive two hints for one Malop closer together than the interval.
//!
//! The table of Malops (waiting, or in their interval) holds at most `capacity` entries.
//! When it is full, an event for a new Malop is dropped and counted
//! ([`DropReason::CoalesceOverflow`]): Malops already waiting keep their place, so a flood of
//! forged ids cannot push out a real one that arrived first; the poll loop is the safety net
//! for what is dropped. Nothing is dropped because the consumer is slow: hints wait in the
//! table (at most one per Malop) and the listener never waits for the consumer.

use crate::malop::{MalopHint, MalopId};
use crate::stats::{Counters, DropReason, Event};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Entry {
    /// A hint waiting for the consumer (the Malop is then in `State::ready`).
    ready: Option<MalopHint>,
    /// A hint merged during the interval after the last hand-over.
    pending: Option<MalopHint>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<MalopId, Entry>,
    /// Malops whose `ready` hint waits for the consumer, oldest first.
    ready: VecDeque<MalopId>,
    /// Malops in their interval after a hand-over, by deadline (the interval is constant,
    /// so deadlines are in push order).
    cooling: VecDeque<(Instant, MalopId)>,
    closed: bool,
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
        while let Some((deadline, _)) = state.cooling.front() {
            if *deadline > now {
                break;
            }
            let (_, id) = state.cooling.pop_front().expect("front exists");
            let Some(entry) = state.entries.get_mut(&id) else {
                continue;
            };
            match entry.pending.take() {
                Some(hint) => {
                    entry.ready = Some(hint);
                    state.ready.push_back(id);
                    readied = true;
                }
                None => {
                    state.entries.remove(&id);
                }
            }
        }
        readied
    }

    fn take(&self, state: &mut State, now: Instant) -> Option<MalopHint> {
        self.expire(state, now);
        while let Some(id) = state.ready.pop_front() {
            let Some(hint) = state.entries.get_mut(&id).and_then(|e| e.ready.take()) else {
                continue;
            };
            state.cooling.push_back((now + self.interval, id));
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

    /// Takes one Malop event in; never waits for the consumer.
    pub(crate) fn ingest(&self, hint: MalopHint) {
        self.ingest_at(hint, Instant::now());
    }

    /// [`Coalescer::ingest`] at a given time (tests drive the clock through it).
    pub(crate) fn ingest_at(&self, hint: MalopHint, now: Instant) {
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
        } else if state.entries.len() >= shared.capacity {
            shared.counters.dropped(DropReason::CoalesceOverflow);
            return;
        } else {
            let id = hint.malop_id.clone();
            state.entries.insert(
                id.clone(),
                Entry {
                    ready: Some(hint),
                    pending: None,
                },
            );
            state.ready.push_back(id);
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
/// - When the table is full, an event for a new Malop is dropped and counted
///   ([`DropReason::CoalesceOverflow`]): the newest is dropped and the Malops already
///   tracked keep their place, so a flood of forged ids cannot push out a real Malop that
///   arrived first. The poll loop is the safety net for what is dropped.
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
                state.cooling.front().map(|(deadline, _)| *deadline)
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
    use crate::malop::MalopEvent;
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
        c.ingest_at(hint("11.1", MalopEvent::Created), t0);
        assert_eq!(r.try_recv_at(t0).unwrap().event, MalopEvent::Created);
        for _ in 0..100 {
            c.ingest_at(hint("11.1", MalopEvent::MachineInformation), t0 + MS);
        }
        c.ingest_at(hint("11.1", MalopEvent::Updated), t0 + 2 * MS);
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
        c.ingest_at(hint("11.1", MalopEvent::Created), t0);
        let handed = t0 + 3 * INTERVAL;
        c.ingest_at(hint("11.1", MalopEvent::Updated), handed);
        assert_eq!(r.try_recv_at(handed).unwrap().event, MalopEvent::Updated);
        c.ingest_at(hint("11.1", MalopEvent::MachineInformation), handed + MS);
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
            c.ingest_at(hint(id, MalopEvent::Created), t0);
        }
        for id in ["11.1", "11.2", "11.3"] {
            assert_eq!(id_of(&mut r, t0), id);
        }
    }

    #[test]
    fn a_full_table_drops_the_newest_and_keeps_the_waiting() {
        let (c, mut r, counters, t0) = setup(2);
        for id in ["11.1", "11.2", "11.3"] {
            c.ingest_at(hint(id, MalopEvent::Created), t0);
        }
        assert_eq!(counters.snapshot().dropped(DropReason::CoalesceOverflow), 1);
        assert_eq!(id_of(&mut r, t0), "11.1");
        assert_eq!(id_of(&mut r, t0), "11.2");
        assert_eq!(r.try_recv_at(t0), Err(TryRecvError::Empty));
        // Once their intervals end with nothing pending, room is made again.
        c.ingest_at(hint("11.3", MalopEvent::Created), t0 + INTERVAL);
        assert_eq!(id_of(&mut r, t0 + INTERVAL), "11.3");
    }

    #[tokio::test]
    async fn close_ends_the_stream_after_ready_hints() {
        let (c, mut r, _, _) = setup(10);
        c.ingest(hint("11.1", MalopEvent::Created));
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
        c.ingest(hint("11.7", MalopEvent::Created));
        assert_eq!(task.await.unwrap().unwrap().malop_id.as_str(), "11.7");
    }
}
