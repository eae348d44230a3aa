//! This process's view of each plugin's health, so that a clean run of a healthy plugin costs
//! no store access, and so that a clean run never undoes a trap recorded while it ran.
//!
//! Store writes about a plugin's health (a trap counted, a pause, a reset) happen under the
//! book's write lock (an async lock, held while the write runs on the blocking pool), so they
//! are ordered with the book's own state; reading the book never waits for a write. Only this process records
//! traps; another process sharing the database would not see its pauses here.

use riposte_domain::PluginName;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

#[derive(Clone, Copy, Debug, Default)]
struct Health {
    /// The store's trap count and pause are known to be reset since the last trap.
    reset: bool,
    /// Traps this process recorded.
    traps: u64,
}

/// Per-plugin health as this process knows it.
#[derive(Debug, Default)]
pub(super) struct HealthBook {
    plugins: Mutex<HashMap<PluginName, Health>>,
    /// Held across each store write and the book change that goes with it.
    writes: tokio::sync::Mutex<()>,
}

impl HealthBook {
    /// How many traps of `plugin` this process has recorded: taken before an invocation, it
    /// tells afterwards whether a trap came in between.
    pub fn traps(&self, plugin: &PluginName) -> u64 {
        self.lock().get(plugin).map_or(0, |h| h.traps)
    }

    /// Whether `plugin` is known to be neither paused nor counting traps.
    pub(crate) fn known_healthy(&self, plugin: &PluginName) -> bool {
        self.lock().get(plugin).is_some_and(|h| h.reset)
    }

    /// Records a trap of `plugin`; `record` writes it to the store.
    pub async fn trap<R>(&self, plugin: &PluginName, record: impl Future<Output = R>) -> R {
        let _writing = self.writes.lock().await;
        {
            let mut book = self.lock();
            let health = book.entry(plugin.clone()).or_default();
            health.reset = false;
            health.traps += 1;
        }
        record.await
    }

    /// After a clean run of `plugin` that began when [`HealthBook::traps`] was `traps_before`:
    /// `reset` clears its trap count and pause in the store, unless that is known to be done
    /// already, or a trap was recorded since the run began (the trap stands). An error of
    /// `reset` is returned; the run is then not to be recorded handled.
    pub(crate) async fn clean_run<E>(
        &self,
        plugin: &PluginName,
        traps_before: u64,
        reset: impl Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        let _writing = self.writes.lock().await;
        {
            let book = self.lock();
            let health = book.get(plugin).copied().unwrap_or_default();
            if health.reset || health.traps != traps_before {
                return Ok(());
            }
        }
        reset.await?;
        self.lock().entry(plugin.clone()).or_default().reset = true;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PluginName, Health>> {
        self.plugins.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> PluginName {
        PluginName::new("rule")
    }

    #[tokio::test]
    async fn a_clean_run_resets_once_then_costs_nothing() {
        let book = HealthBook::default();
        let mut resets = 0;
        for _ in 0..3 {
            let before = book.traps(&name());
            book.clean_run(&name(), before, async {
                resets += 1;
                Ok::<_, ()>(())
            })
            .await
            .unwrap();
        }
        assert_eq!(resets, 1);
        assert!(book.known_healthy(&name()));
    }

    #[tokio::test]
    async fn a_clean_run_that_began_before_a_trap_does_not_undo_it() {
        let book = HealthBook::default();
        let before = book.traps(&name());
        book.trap(&name(), async {}).await;
        let mut reset = false;
        book.clean_run(&name(), before, async {
            reset = true;
            Ok::<_, ()>(())
        })
        .await
        .unwrap();
        assert!(!reset, "the trap (and any pause it started) stands");
        assert!(!book.known_healthy(&name()));
        // A run that begins after the trap resets it.
        let after = book.traps(&name());
        book.clean_run(&name(), after, async { Ok::<_, ()>(()) })
            .await
            .unwrap();
        assert!(book.known_healthy(&name()));
    }

    #[tokio::test]
    async fn a_failed_reset_is_reported_and_not_remembered() {
        let book = HealthBook::default();
        let err = book
            .clean_run(&name(), 0, async { Err("database is locked") })
            .await;
        assert_eq!(err, Err("database is locked"));
        assert!(!book.known_healthy(&name()));
    }
}
