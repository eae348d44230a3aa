//! What this host itself just did to machines' isolation, laid over the sensors a batch of
//! Malops was read with: one `sensors/query` serves a batch of Malops, so a Malop evaluated
//! after another isolated its machine would still see the machine not isolated and ask
//! again. The isolations (and unisolations) the server confirmed to this host in the last
//! [`RECENT_MS`] replace that older answer in what a plugin is shown; the server stays the
//! authority for everything older.

use riposte_domain::{Machine, MachineGuid, Malop};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

/// How long a confirmed isolation change overrides the sensors a Malop was read with (ms):
/// about as old as a batch's sensor answer can get.
pub const RECENT_MS: i64 = 60_000;

/// The most machines remembered at once (the oldest entries go first).
const MAX_MACHINES: usize = 100_000;

/// Isolation changes this host made, by machine: whether isolated, and when (ms).
#[derive(Default)]
pub(crate) struct RecentIsolations {
    machines: Mutex<HashMap<MachineGuid, (bool, i64)>>,
}

impl RecentIsolations {
    /// The server confirmed that `machines` are now isolated (or not), at `at_ms`.
    pub(crate) fn note(&self, machines: &[MachineGuid], isolated: bool, at_ms: i64) {
        let mut known = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() + machines.len() > MAX_MACHINES {
            known.retain(|_, (_, at)| at_ms - *at < RECENT_MS);
        }
        for guid in machines {
            if known.len() >= MAX_MACHINES {
                break;
            }
            known.insert(guid.clone(), (isolated, at_ms));
        }
    }

    /// `malop` as a plugin should see it at `now_ms`: its machines' isolation as this host
    /// changed it within [`RECENT_MS`], where that differs (borrowed as it is otherwise).
    pub(crate) fn apply<'m>(&self, malop: &'m Malop, now_ms: i64) -> Cow<'m, Malop> {
        let known = self.machines.lock().unwrap_or_else(|p| p.into_inner());
        if known.is_empty() {
            return Cow::Borrowed(malop);
        }
        let changed = |m: &Machine| {
            known
                .get(&m.guid)
                .filter(|(isolated, at)| now_ms - at < RECENT_MS && *isolated != m.isolated)
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

    #[test]
    fn a_recent_isolation_is_shown_and_an_old_one_is_not() {
        let recent = RecentIsolations::default();
        let malop = malop_on(&["a", "b"]);
        assert!(matches!(recent.apply(&malop, 10), Cow::Borrowed(_)));
        recent.note(&[MachineGuid::new("a")], true, 1_000);
        let seen = recent.apply(&malop, 2_000);
        assert_eq!(
            seen.machines.iter().map(|m| m.isolated).collect::<Vec<_>>(),
            [true, false]
        );
        assert!(!malop.machines[0].isolated, "the Malop read is left alone");
        let later = recent.apply(&malop, 1_000 + RECENT_MS);
        assert!(
            matches!(later, Cow::Borrowed(_)),
            "past RECENT_MS the server's answer stands"
        );
        recent.note(&[MachineGuid::new("a")], false, 3_000);
        let again = recent.apply(&malop, 3_001);
        assert!(matches!(again, Cow::Borrowed(_)), "unisolated again");
    }
}
