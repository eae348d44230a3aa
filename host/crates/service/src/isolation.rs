//! What this host itself did to machines' isolation, laid over a sensors answer that is
//! older than it. One `sensors/query` serves a batch of Malops, so a Malop evaluated after
//! another isolated its machine was read with the machine not isolated and would ask again.
//!
//! An isolation the server confirmed to this host at `t`, machine by machine, replaces what
//! a Malop shows only when that Malop's sensors answer was in hand before `t`: such an
//! answer cannot know of it. An answer read after `t` is the server's word and stands, so an
//! analyst who unisolates a machine is seen by every Malop read after that, and a new Malop
//! on the machine is contained again. An unisolation this host sends counts from the moment
//! it leaves, whatever the answer: showing a machine not isolated is the safe direction.

use riposte_domain::{Machine, MachineGuid, Malop};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most machines remembered at once. Past it, changes older than [`KEEP`] are
/// forgotten, and a change that still finds no room is not remembered: forgetting costs at
/// most an isolation asked for twice, never a missed one.
const MAX_MACHINES: usize = 100_000;

/// How long a change is kept once the table is full: older than any batch's sensors answer
/// still being evaluated.
const KEEP: Duration = Duration::from_secs(3600);

/// Isolation changes this host made, by machine: whether isolated, and when the server
/// confirmed it (this host's monotonic clock: a step of the wall clock cannot put a change
/// after a later read).
#[derive(Default)]
pub(crate) struct RecentIsolations {
    machines: Mutex<HashMap<MachineGuid, (bool, Instant)>>,
}

impl RecentIsolations {
    /// The server confirmed `at` that `machines` are now isolated (or not).
    pub(crate) fn note(&self, machines: &[MachineGuid], isolated: bool, at: Instant) {
        let mut known = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() + machines.len() > MAX_MACHINES {
            known.retain(|_, (_, noted)| at.saturating_duration_since(*noted) < KEEP);
        }
        for guid in machines {
            if known.len() >= MAX_MACHINES && !known.contains_key(guid) {
                continue;
            }
            known.insert(guid.clone(), (isolated, at));
        }
    }

    /// `malop` as a plugin should see it, its machines' state having been read from the
    /// server at `read`: each machine whose isolation this host changed after that shows
    /// the change (borrowed as it is otherwise, and when its sensors were not read).
    pub(crate) fn apply<'m>(&self, malop: &'m Malop, read: Option<Instant>) -> Cow<'m, Malop> {
        let Some(read) = read else {
            return Cow::Borrowed(malop);
        };
        let known = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        let changed = |m: &Machine| {
            known
                .get(&m.guid)
                .filter(|(isolated, at)| *at > read && *isolated != m.isolated)
                .map(|(isolated, _)| *isolated)
        };
        if !malop.machines.iter().any(|m| changed(m).is_some()) {
            return Cow::Borrowed(malop);
        }
        let mut seen = malop.clone();
        for machine in &mut seen.machines {
            if let Some(isolated) = changed(machine) {
                machine.isolated = isolated;
            }
        }
        Cow::Owned(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ms` milliseconds after a fixed start.
    fn at(ms: u64) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    fn malop_on(guids: &[&str]) -> Malop {
        let fixture = include_str!("../../../../tests/fixtures/malops/ransomware.json");
        let mut malop: Malop = serde_json::from_str(fixture).expect("the fixture parses");
        let template = malop.machines[0].clone();
        malop.machines = guids
            .iter()
            .map(|g| Machine {
                guid: MachineGuid::new(*g),
                isolated: false,
                ..template.clone()
            })
            .collect();
        malop
    }

    fn isolated(malop: &Malop) -> Vec<bool> {
        malop.machines.iter().map(|m| m.isolated).collect()
    }

    #[test]
    fn a_change_shows_only_to_a_malop_whose_sensors_were_read_before_it() {
        let recent = RecentIsolations::default();
        let malop = malop_on(&["a", "b"]);
        recent.note(&[MachineGuid::new("a")], true, at(1_000));
        let seen = recent.apply(&malop, Some(at(999)));
        assert_eq!(isolated(&seen), [true, false], "read before the isolation");
        assert!(!malop.machines[0].isolated, "the Malop read is left alone");
        for after in [1_000, 5_000] {
            assert!(
                matches!(recent.apply(&malop, Some(at(after))), Cow::Borrowed(_)),
                "read at {after}, not before the isolation at 1000: the server's answer stands (an analyst may have unisolated it since)"
            );
        }
        assert!(
            matches!(recent.apply(&malop, None), Cow::Borrowed(_)),
            "sensors not read: nothing to lay over"
        );
        recent.note(&[MachineGuid::new("a")], false, at(3_000));
        assert!(
            matches!(recent.apply(&malop, Some(at(2_000))), Cow::Borrowed(_)),
            "unisolated again since: shown as read"
        );
    }

    #[test]
    fn a_full_table_forgets_old_changes_first_and_never_grows_past_its_bound() {
        let recent = RecentIsolations::default();
        let old: Vec<MachineGuid> = (0..MAX_MACHINES)
            .map(|i| MachineGuid::new(format!("old-{i}")))
            .collect();
        recent.note(&old, true, at(0));
        let new = [MachineGuid::new("new")];
        recent.note(&new, true, at(0) + KEEP);
        let known = recent.machines.lock().unwrap();
        assert_eq!(known.len(), 1, "the changes older than KEEP went");
        assert!(known.contains_key(&new[0]));
        drop(known);
        let more: Vec<MachineGuid> = (0..MAX_MACHINES + 5)
            .map(|i| MachineGuid::new(format!("more-{i}")))
            .collect();
        recent.note(&more, true, at(1) + KEEP);
        assert_eq!(recent.machines.lock().unwrap().len(), MAX_MACHINES);
        // A machine already known is updated even after one with no room was skipped.
        let known = more[0].clone();
        recent.note(
            &[MachineGuid::new("no-room"), known.clone()],
            false,
            at(2) + KEEP,
        );
        let table = recent.machines.lock().unwrap();
        assert_eq!(table.len(), MAX_MACHINES);
        assert_eq!(table.get(&known), Some(&(false, at(2) + KEEP)));
    }
}
