//! The key-value store each plugin gets (the WIT `kv` interface), scoped by plugin name, with
//! a total size limit per plugin: each entry counts its key, its value and
//! [`KV_ENTRY_OVERHEAD_BYTES`] (what a row costs the database), so a plugin cannot fill the
//! disk with a million empty entries under a 1 MiB limit.

use super::{Refusal, Result, Store};
use crate::repos::Kv;
use crate::sql::{OptionalExtension, params};

/// The longest key, in bytes.
pub const KV_MAX_KEY_BYTES: usize = riposte_domain::bounds::MAX_KV_KEY_BYTES;
/// The largest single value, in bytes.
pub const KV_MAX_VALUE_BYTES: usize = riposte_domain::bounds::MAX_KV_VALUE_BYTES;
/// What each entry counts against its plugin's limit besides its key and value.
pub const KV_ENTRY_OVERHEAD_BYTES: u64 = riposte_domain::bounds::KV_ENTRY_OVERHEAD_BYTES;

/// The query of a plugin's usage (its entries' keys and values, and the overhead of each)
/// over the rows `filter` selects.
fn usage_query(filter: &str) -> String {
    format!(
        "SELECT CAST(COALESCE(SUM(size_bytes), 0) + {KV_ENTRY_OVERHEAD_BYTES} * COUNT(*) AS BIGINT) \
         FROM plugin_kv WHERE {filter}"
    )
}

impl Kv for Store {
    fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        self.read("kv_get", |tx| {
            tx.query_row(
                "SELECT value FROM plugin_kv WHERE plugin = ?1 AND kv_key = ?2",
                params![plugin, key],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        limit_bytes: u64,
        now_ms: i64,
    ) -> Result<()> {
        self.write("kv_set", |tx| {
            if key.len() > KV_MAX_KEY_BYTES {
                return Err(Refusal::TooLarge {
                    what: "key",
                    len: key.len(),
                    max: KV_MAX_KEY_BYTES,
                }
                .into());
            }
            if value.len() > KV_MAX_VALUE_BYTES {
                return Err(Refusal::TooLarge {
                    what: "value",
                    len: value.len(),
                    max: KV_MAX_VALUE_BYTES,
                }
                .into());
            }
            let others: i64 = tx.query_row(
                &usage_query("plugin = ?1 AND kv_key <> ?2"),
                params![plugin, key],
                |r| r.get(0),
            )?;
            let size = (key.len() + value.len()) as u64;
            let would_use = others.max(0) as u64 + size + KV_ENTRY_OVERHEAD_BYTES;
            if would_use > limit_bytes {
                return Err(Refusal::KvQuota {
                    plugin: plugin.to_owned(),
                    would_use,
                    limit: limit_bytes,
                }
                .into());
            }
            tx.execute(
                "INSERT INTO plugin_kv (plugin, kv_key, value, size_bytes, updated_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (plugin, kv_key) DO UPDATE SET \
                 value = excluded.value, size_bytes = excluded.size_bytes, updated_at_ms = excluded.updated_at_ms",
                params![plugin, key, value, size as i64, now_ms],
            )?;
            Ok(())
        })
    }

    fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool> {
        self.write("kv_delete", |tx| {
            Ok(tx.execute(
                "DELETE FROM plugin_kv WHERE plugin = ?1 AND kv_key = ?2",
                params![plugin, key],
            )? > 0)
        })
    }

    fn kv_usage(&self, plugin: &str) -> Result<u64> {
        self.read("kv_usage", |tx| {
            let used: i64 =
                tx.query_row(&usage_query("plugin = ?1"), params![plugin], |r| r.get(0))?;
            Ok(used.max(0) as u64)
        })
    }

    fn kv_keys(&self, plugin: &str) -> Result<Vec<String>> {
        self.read("kv_keys", |tx| {
            tx.query_map(
                "SELECT kv_key FROM plugin_kv WHERE plugin = ?1 ORDER BY kv_key",
                params![plugin],
                |r| r.get(0),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    backend_tests! {
        fn values_are_scoped_by_plugin_and_limited(store) {
            // Each entry counts its key, its value and the overhead.
            const LIMIT: u64 = 20 + KV_ENTRY_OVERHEAD_BYTES;
            store.kv_set("a", "k", b"12345", LIMIT, 1).unwrap();
            assert_eq!(store.kv_get("a", "k").unwrap(), Some(b"12345".to_vec()));
            assert_eq!(store.kv_get("b", "k").unwrap(), None);
            assert_eq!(store.kv_usage("a").unwrap(), 6 + KV_ENTRY_OVERHEAD_BYTES);

            // Overwriting counts the new size, not both.
            store.kv_set("a", "k", &[0; 19], LIMIT, 2).unwrap();
            let err = store.kv_set("a", "k2", b"x", LIMIT, 3).unwrap_err();
            let want = 23 + 2 * KV_ENTRY_OVERHEAD_BYTES;
            assert!(
                matches!(err.refusal(), Some(Refusal::KvQuota { would_use, .. }) if *would_use == want),
                "{err}"
            );
            assert_eq!(store.kv_get("a", "k2").unwrap(), None, "nothing written");
            store.kv_set("b", "k2", b"x", LIMIT, 3).unwrap();

            assert!(store.kv_delete("a", "k").unwrap());
            assert!(!store.kv_delete("a", "k").unwrap());
            store.kv_set("a", "k2", b"x", LIMIT, 4).unwrap();
            assert_eq!(store.kv_keys("a").unwrap(), vec!["k2".to_owned()]);

            // Empty entries are not free: a limit of n overheads holds n of them.
            for i in 0..4 {
                store.kv_set("c", &i.to_string(), b"", 4 * (KV_ENTRY_OVERHEAD_BYTES + 1), 5).unwrap();
            }
            assert!(store.kv_set("c", "4", b"", 4 * (KV_ENTRY_OVERHEAD_BYTES + 1), 5).is_err());

            let long = "k".repeat(KV_MAX_KEY_BYTES + 1);
            assert!(matches!(
                store
                    .kv_set("a", &long, b"", u64::MAX, 5)
                    .unwrap_err()
                    .refusal(),
                Some(Refusal::TooLarge { what: "key", .. })
            ));
            store.kv_set("a", "empty", b"", u64::MAX, 6).unwrap();
            assert_eq!(store.kv_get("a", "empty").unwrap(), Some(Vec::new()));
        }
    }
}
