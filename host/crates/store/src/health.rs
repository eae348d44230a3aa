//! Plugin health: a plugin that traps several times in a row is paused, for a time that
//! doubles with each further trap, up to a maximum; one clean run resets it.

use super::{Op, Result, Store};
use crate::repos::Health;
use crate::sql::{OptionalExtension, Row, Tx, params};

/// When and for how long a trapping plugin is paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive traps that trigger the first pause.
    pub threshold: u32,
    /// The first pause, in ms.
    pub base_ms: i64,
    /// The longest pause, in ms.
    pub max_ms: i64,
}

impl Default for Backoff {
    /// Paused after 3 traps in a row: 1 minute, then 2, 4, ... up to 1 hour.
    fn default() -> Self {
        Backoff {
            threshold: 3,
            base_ms: 60_000,
            max_ms: 3_600_000,
        }
    }
}

impl Backoff {
    /// The pause after `consecutive_traps` traps in a row, or `None` below the threshold.
    pub(crate) fn pause_for(&self, consecutive_traps: u32) -> Option<i64> {
        let threshold = self.threshold.max(1);
        if consecutive_traps < threshold {
            return None;
        }
        let doublings = (consecutive_traps - threshold).min(62);
        let pause = self.base_ms.max(0).saturating_mul(1i64 << doublings);
        Some(pause.min(self.max_ms.max(0)))
    }
}

/// A plugin's state after a trap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PauseState {
    /// Traps in a row, this one included.
    pub consecutive_traps: u32,
    /// Paused until this time (ms), if the trap paused it.
    pub paused_until_ms: Option<i64>,
}

/// The health of one plugin that has trapped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PausedPlugin {
    /// The plugin.
    pub plugin: String,
    /// Traps in a row.
    pub consecutive_traps: u32,
    /// Traps in all.
    pub total_traps: u64,
    /// The last trap (ms).
    pub last_trap_at_ms: Option<i64>,
    /// Paused until (ms).
    pub paused_until_ms: Option<i64>,
}

pub(crate) const HEALTH_COLUMNS: &str =
    "plugin, consecutive_traps, total_traps, last_trap_at_ms, paused_until_ms";

pub(crate) fn health_row(r: &Row) -> Op<PausedPlugin> {
    let consecutive: i64 = r.get(1)?;
    let total: i64 = r.get(2)?;
    Ok(PausedPlugin {
        plugin: r.get(0)?,
        consecutive_traps: consecutive.clamp(0, u32::MAX as i64) as u32,
        total_traps: total.max(0) as u64,
        last_trap_at_ms: r.get(3)?,
        paused_until_ms: r.get(4)?,
    })
}

impl Health for Store {
    fn record_trap(&self, plugin: &str, now_ms: i64, backoff: &Backoff) -> Result<PauseState> {
        self.write("record_trap", |tx| {
            let before: Option<i64> = tx
                .query_row(
                    "SELECT consecutive_traps FROM plugin_health WHERE plugin = ?1", params![plugin],
                    |r| r.get(0),
                )
                .optional()?;
            let consecutive = before.unwrap_or(0).clamp(0, u32::MAX as i64 - 1) as u32 + 1;
            let paused_until_ms = backoff
                .pause_for(consecutive)
                .map(|pause| now_ms.saturating_add(pause));
            tx.execute(
                "INSERT INTO plugin_health (plugin, consecutive_traps, total_traps, last_trap_at_ms, paused_until_ms) \
                 VALUES (?1, ?2, 1, ?3, ?4) ON CONFLICT (plugin) DO UPDATE SET \
                 consecutive_traps = excluded.consecutive_traps, \
                 total_traps = plugin_health.total_traps + 1, \
                 last_trap_at_ms = excluded.last_trap_at_ms, \
                 paused_until_ms = COALESCE(excluded.paused_until_ms, plugin_health.paused_until_ms)",
                params![plugin, i64::from(consecutive), now_ms, paused_until_ms],
            )?;
            Ok(PauseState {
                consecutive_traps: consecutive,
                paused_until_ms,
            })
        })
    }

    fn record_success(&self, plugin: &str) -> Result<()> {
        self.write("record_success", |tx| {
            tx.execute(
                "UPDATE plugin_health SET consecutive_traps = 0, paused_until_ms = NULL WHERE plugin = ?1", params![plugin],
            )?;
            Ok(())
        })
    }

    fn paused_until(&self, plugin: &str, now_ms: i64) -> Result<Option<i64>> {
        self.read("paused_until", |tx| {
            let until: Option<Option<i64>> = tx
                .query_row(
                    "SELECT paused_until_ms FROM plugin_health WHERE plugin = ?1",
                    params![plugin],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(until.flatten().filter(|until| *until > now_ms))
        })
    }

    fn paused_plugins(&self, now_ms: i64) -> Result<Vec<PausedPlugin>> {
        self.read("paused_plugins", |tx| paused(tx, now_ms))
    }
}

pub(crate) fn paused(tx: &Tx<'_>, now_ms: i64) -> Op<Vec<PausedPlugin>> {
    tx.query_map(
        &format!(
            "SELECT {HEALTH_COLUMNS} FROM plugin_health WHERE paused_until_ms > ?1 ORDER BY plugin"
        ),
        params![now_ms],
        health_row,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_the_maximum() {
        let b = Backoff {
            threshold: 2,
            base_ms: 1_000,
            max_ms: 5_000,
        };
        let pauses: Vec<_> = (1..=6).map(|n| b.pause_for(n)).collect();
        assert_eq!(
            pauses,
            vec![
                None,
                Some(1_000),
                Some(2_000),
                Some(4_000),
                Some(5_000),
                Some(5_000)
            ]
        );
        assert_eq!(Backoff::default().pause_for(u32::MAX), Some(3_600_000));
    }

    backend_tests! {
        fn crash_loops_pause_and_a_success_resets(store) {
            let b = Backoff::default();
            assert_eq!(store.record_trap("p", 0, &b).unwrap().paused_until_ms, None);
            assert_eq!(
                store.record_trap("p", 10, &b).unwrap().paused_until_ms,
                None
            );
            let third = store.record_trap("p", 20, &b).unwrap();
            assert_eq!(
                third,
                PauseState {
                    consecutive_traps: 3,
                    paused_until_ms: Some(60_020)
                }
            );
            assert_eq!(store.paused_until("p", 60_019).unwrap(), Some(60_020));
            assert_eq!(store.paused_plugins(60_019).unwrap().len(), 1);
            assert!(
                store.paused_plugins(60_020).unwrap().is_empty(),
                "the pause ends"
            );
            let fourth = store.record_trap("p", 70_000, &b).unwrap();
            assert_eq!(fourth.paused_until_ms, Some(70_000 + 120_000), "doubled");
            let paused = store.paused_plugins(70_001).unwrap();
            assert_eq!(paused[0].total_traps, 4);

            store.record_success("p").unwrap();
            assert_eq!(store.paused_until("p", 70_001).unwrap(), None);
            assert_eq!(
                store
                    .record_trap("p", 80_000, &b)
                    .unwrap()
                    .consecutive_traps,
                1
            );
            assert!(store.paused_plugins(80_001).unwrap().is_empty());
            store.record_success("never-trapped").unwrap();
        }
    }
}
