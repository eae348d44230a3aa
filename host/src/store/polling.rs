//! Polling state: the watermark per source on the server's clock, and the Malops each plugin
//! has handled, keyed by their last update time.

use super::{Result, Store};
use crate::domain::{MalopId, PluginName, TimestampMs};
use rusqlite::{OptionalExtension, params};

/// One Malop a plugin handled as of an update: a row of [`Store::mark_handled_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    /// The plugin.
    pub plugin: PluginName,
    /// The Malop.
    pub malop_id: MalopId,
    /// The Malop's last update time the plugin saw (server ms).
    pub last_update_ms: TimestampMs,
}

const MARK_HANDLED: &str = "INSERT INTO handled_malops (plugin, malop_id, last_update_ms, handled_at_ms) \
     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (plugin, malop_id) DO UPDATE SET \
     last_update_ms = excluded.last_update_ms, handled_at_ms = excluded.handled_at_ms \
     WHERE excluded.last_update_ms > handled_malops.last_update_ms";

impl Store {
    /// The watermark of `source` (e.g. `crimes/unified:MalopProcess`), in server ms.
    pub fn watermark(&self, source: &str) -> Result<Option<TimestampMs>> {
        self.read("watermark", |tx| {
            Ok(tx
                .query_row(
                    "SELECT watermark_ms FROM watermarks WHERE source = ?1",
                    [source],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    /// Records a poll of `source` at `polled_at_ms` (host clock, for `riposte status`) that
    /// saw everything up to `watermark_ms` (server clock). The watermark never moves back: a
    /// lower value keeps the stored one (the overlap window is applied when querying, not
    /// here). Returns the stored watermark.
    pub fn set_watermark(
        &self,
        source: &str,
        watermark_ms: TimestampMs,
        polled_at_ms: i64,
    ) -> Result<TimestampMs> {
        self.write("set_watermark", |tx| {
            tx.execute(
                "INSERT INTO watermarks (source, watermark_ms, last_poll_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (source) DO UPDATE SET last_poll_ms = excluded.last_poll_ms, \
                 watermark_ms = CASE WHEN excluded.watermark_ms > watermarks.watermark_ms \
                 THEN excluded.watermark_ms ELSE watermarks.watermark_ms END",
                params![source, watermark_ms, polled_at_ms],
            )?;
            Ok(tx.query_row(
                "SELECT watermark_ms FROM watermarks WHERE source = ?1",
                [source],
                |r| r.get(0),
            )?)
        })
    }

    /// Records that `plugin` handled the Malop `malop_id` as of its `last_update_ms`.
    pub fn mark_handled(
        &self,
        plugin: &PluginName,
        malop_id: &MalopId,
        last_update_ms: TimestampMs,
        now_ms: i64,
    ) -> Result<()> {
        let handled = Handled {
            plugin: plugin.clone(),
            malop_id: malop_id.clone(),
            last_update_ms,
        };
        self.mark_handled_all(std::slice::from_ref(&handled), now_ms)
    }

    /// [`Store::mark_handled`] for many Malops in one durable transaction (one fsync): a
    /// group commit of the marks of a batch of invocations.
    pub fn mark_handled_all(&self, handled: &[Handled], now_ms: i64) -> Result<()> {
        if handled.is_empty() {
            return Ok(());
        }
        self.write("mark_handled_all", |tx| {
            let mut insert = tx.prepare_cached(MARK_HANDLED)?;
            for h in handled {
                insert.execute(params![
                    h.plugin.as_str(),
                    h.malop_id.as_str(),
                    h.last_update_ms,
                    now_ms
                ])?;
            }
            Ok(())
        })
    }

    /// Whether `plugin` already handled the Malop as of `last_update_ms` (or a later update):
    /// a Malop updated since is not handled.
    pub fn is_handled(
        &self,
        plugin: &PluginName,
        malop_id: &MalopId,
        last_update_ms: TimestampMs,
    ) -> Result<bool> {
        self.read("is_handled", |tx| {
            let stored: Option<i64> = tx
                .query_row(
                    "SELECT last_update_ms FROM handled_malops WHERE plugin = ?1 AND malop_id = ?2",
                    params![plugin.as_str(), malop_id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(stored.is_some_and(|stored| stored >= last_update_ms))
        })
    }

    /// Forgets the Malops handled at or before `before_ms`. Keep well past the poll overlap
    /// window: a forgotten Malop seen again is offered again (its actions are still
    /// deduplicated by the ledger). Returns how many were forgotten.
    pub fn prune_handled(&self, before_ms: i64) -> Result<usize> {
        self.write("prune_handled", |tx| {
            Ok(tx.execute(
                "DELETE FROM handled_malops WHERE handled_at_ms <= ?1",
                [before_ms],
            )?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_only_move_forward() {
        let store = Store::open_in_memory().unwrap();
        let src = "crimes/unified:MalopProcess";
        assert_eq!(store.watermark(src).unwrap(), None);
        assert_eq!(store.set_watermark(src, 1_000, 5).unwrap(), 1_000);
        assert_eq!(store.set_watermark(src, 900, 6).unwrap(), 1_000);
        assert_eq!(store.set_watermark(src, 2_000, 7).unwrap(), 2_000);
        assert_eq!(store.watermark(src).unwrap(), Some(2_000));
        assert_eq!(store.watermark("other").unwrap(), None);
    }

    #[test]
    fn a_malop_updated_later_is_handled_again() {
        let store = Store::open_in_memory().unwrap();
        let p = PluginName::new("p");
        let q = PluginName::new("q");
        let m = MalopId::new("11.-1");
        assert!(!store.is_handled(&p, &m, 100).unwrap());
        store.mark_handled(&p, &m, 100, 1).unwrap();
        assert!(store.is_handled(&p, &m, 100).unwrap());
        assert!(
            store.is_handled(&p, &m, 90).unwrap(),
            "an older view is not new"
        );
        assert!(!store.is_handled(&p, &m, 150).unwrap());
        assert!(!store.is_handled(&q, &m, 100).unwrap(), "per plugin");
        store.mark_handled(&p, &m, 150, 2).unwrap();
        store.mark_handled(&p, &m, 120, 3).unwrap();
        assert!(store.is_handled(&p, &m, 150).unwrap(), "never moves back");
        assert_eq!(store.prune_handled(1).unwrap(), 0);
        assert_eq!(store.prune_handled(2).unwrap(), 1);
        assert!(!store.is_handled(&p, &m, 150).unwrap());
    }
}
