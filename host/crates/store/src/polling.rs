//! Polling state: the watermark per source on the server's clock, and the Malops each plugin
//! has handled, keyed by their last update time.

use super::{Result, Store};
use crate::repos::Polling;
use crate::sql::{OptionalExtension, params};
use riposte_domain::{MalopId, MalopPart, PluginName, TimestampMs};

/// One Malop a plugin handled as of an update: a row of [`crate::Polling::mark_handled_all`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    /// The plugin.
    pub plugin: PluginName,
    /// The Malop.
    pub malop_id: MalopId,
    /// The Malop's last update time the plugin saw (server ms).
    pub last_update_ms: TimestampMs,
    /// The parts the plugin was offered the Malop without ([`riposte_domain::Malop::unreadable`]).
    pub unreadable: Vec<MalopPart>,
}

/// A later view of the same update replaces the earlier one: it is only offered when it
/// reads a part the earlier one could not.
const MARK_HANDLED: &str = "INSERT INTO handled_malops (plugin, malop_id, last_update_ms, handled_at_ms, unreadable) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (plugin, malop_id) DO UPDATE SET \
     last_update_ms = excluded.last_update_ms, handled_at_ms = excluded.handled_at_ms, \
     unreadable = excluded.unreadable \
     WHERE excluded.last_update_ms >= handled_malops.last_update_ms";

/// Parts as stored: sorted names, comma-separated.
pub(crate) fn parts_text(parts: &[MalopPart]) -> String {
    let mut names: Vec<&str> = parts.iter().map(|p| p.name()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(",")
}

/// Parts from their stored text (unknown names are skipped).
pub(crate) fn parts_of(text: &str) -> Vec<MalopPart> {
    let mut parts: Vec<MalopPart> = text.split(',').filter_map(MalopPart::from_name).collect();
    parts.sort();
    parts.dedup();
    parts
}

impl Polling for Store {
    fn watermark(&self, source: &str) -> Result<Option<TimestampMs>> {
        self.read("watermark", |tx| {
            tx.query_row(
                "SELECT watermark_ms FROM watermarks WHERE source = ?1",
                params![source],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn set_watermark(
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
            tx.query_row(
                "SELECT watermark_ms FROM watermarks WHERE source = ?1",
                params![source],
                |r| r.get(0),
            )
        })
    }

    fn mark_handled(
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
            unreadable: Vec::new(),
        };
        self.mark_handled_all(std::slice::from_ref(&handled), now_ms)
    }

    fn mark_handled_all(&self, handled: &[Handled], now_ms: i64) -> Result<()> {
        if handled.is_empty() {
            return Ok(());
        }
        self.write("mark_handled_all", |tx| {
            for h in handled {
                tx.execute(
                    MARK_HANDLED,
                    params![
                        h.plugin.as_str(),
                        h.malop_id.as_str(),
                        h.last_update_ms,
                        now_ms,
                        parts_text(&h.unreadable),
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn is_handled(
        &self,
        plugin: &PluginName,
        malop_id: &MalopId,
        last_update_ms: TimestampMs,
        unreadable: Option<&[MalopPart]>,
    ) -> Result<bool> {
        self.read("is_handled", |tx| {
            let stored: Option<(i64, String)> = tx
                .query_row(
                    "SELECT last_update_ms, unreadable FROM handled_malops WHERE plugin = ?1 AND malop_id = ?2",
                    params![plugin.as_str(), malop_id.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(stored.is_some_and(|(stored, missing)| {
                stored > last_update_ms
                    || (stored == last_update_ms
                        && parts_of(&missing)
                            .iter()
                            .all(|p| unreadable.is_some_and(|now| now.contains(p))))
            }))
        })
    }

    fn prune_handled(&self, before_ms: i64) -> Result<usize> {
        self.write("prune_handled", |tx| {
            tx.execute(
                "DELETE FROM handled_malops WHERE handled_at_ms <= ?1",
                params![before_ms],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    backend_tests! {
        fn watermarks_only_move_forward(store) {
            let src = "crimes/unified:MalopProcess";
            assert_eq!(store.watermark(src).unwrap(), None);
            assert_eq!(store.set_watermark(src, 1_000, 5).unwrap(), 1_000);
            assert_eq!(store.set_watermark(src, 900, 6).unwrap(), 1_000);
            assert_eq!(store.set_watermark(src, 2_000, 7).unwrap(), 2_000);
            assert_eq!(store.watermark(src).unwrap(), Some(2_000));
            assert_eq!(store.watermark("other").unwrap(), None);
        }
    }

    backend_tests! {
        fn a_malop_updated_later_is_handled_again(store) {
            let p = PluginName::new("p");
            let q = PluginName::new("q");
            let m = MalopId::new("11.-1");
            let handled = |store: &Store, p: &PluginName, t| store.is_handled(p, &m, t, None).unwrap();
            assert!(!handled(&store, &p, 100));
            store.mark_handled(&p, &m, 100, 1).unwrap();
            assert!(handled(&store, &p, 100));
            assert!(handled(&store, &p, 90), "an older view is not new");
            assert!(!handled(&store, &p, 150));
            assert!(!handled(&store, &q, 100), "per plugin");
            store.mark_handled(&p, &m, 150, 2).unwrap();
            store.mark_handled(&p, &m, 120, 3).unwrap();
            assert!(handled(&store, &p, 150), "never moves back");
            assert_eq!(store.prune_handled(1).unwrap(), 0);
            assert_eq!(store.prune_handled(2).unwrap(), 1);
            assert!(!handled(&store, &p, 150));
        }
    }

    backend_tests! {
        fn a_malop_handled_incomplete_is_offered_again_once_a_part_can_be_read(store) {
            let (p, m) = (PluginName::new("p"), MalopId::new("11.-1"));
            let mark = |parts: Vec<MalopPart>, now| {
                let h = Handled {
                    plugin: p.clone(),
                    malop_id: m.clone(),
                    last_update_ms: 100,
                    unreadable: parts,
                };
                store.mark_handled_all(&[h], now).unwrap();
            };
            let both = [MalopPart::Suspects, MalopPart::Network];
            mark(both.to_vec(), 1);
            let handled = |now: Option<&[MalopPart]>| store.is_handled(&p, &m, 100, now).unwrap();
            assert!(handled(Some(&both[..])), "the same view");
            assert!(
                handled(Some(
                    &[MalopPart::Suspects, MalopPart::Network, MalopPart::Sensors][..]
                )),
                "a poorer view"
            );
            assert!(
                !handled(Some(&[MalopPart::Network][..])),
                "suspects readable now"
            );
            assert!(!handled(None), "a list entry: read it again to know");
            mark(Vec::new(), 2);
            assert!(handled(Some(&[][..])) && handled(None), "complete now");
            assert!(
                handled(Some(&[MalopPart::Suspects][..])),
                "a complete view was offered"
            );
        }
    }
}
