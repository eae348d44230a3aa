//! Blocking work (state-store transactions, audit fsyncs) kept off tokio's async workers.
//!
//! A store method waits on a mutex, on another process's write lock and on the fsync of a
//! durable commit; run on an async worker it would stall every task scheduled there (the
//! other invocations, the followers, the poller). Async code calls the store through
//! [`blocking`], which runs the call on tokio's blocking pool. Code that cannot await (a
//! `Drop`, a synchronous `PluginHost` method, an audit append deep inside a synchronous
//! helper) uses [`in_place`].

use anyhow::Context as _;
use riposte_store::Store;
use riposte_store::settings::DatabaseConfig;
use std::sync::Arc;

/// Opens the state database `database` names (and migrates it). It blocks: async code runs it
/// on the blocking pool.
pub fn open_store(database: &DatabaseConfig) -> anyhow::Result<Store> {
    Store::open_configured(database)
        .with_context(|| format!("opening the state database {database}"))
}

/// Runs `op` on the store from async code, on tokio's blocking thread pool, and waits for
/// it. `name` names the operation in the error if the blocking task itself fails (it
/// panicked, or the runtime is shutting down).
pub(crate) async fn blocking<S, T, F>(
    store: &Arc<S>,
    name: &'static str,
    op: F,
) -> riposte_store::Result<T>
where
    S: ?Sized + Send + Sync + 'static,
    T: Send + 'static,
    F: FnOnce(&S) -> riposte_store::Result<T> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || op(&store))
        .await
        .unwrap_or_else(|join| {
            Err(riposte_store::Error::Interrupted {
                op: name,
                detail: join.to_string(),
            })
        })
}

/// Runs blocking `work` from code that cannot await: on a multi-threaded runtime the worker
/// hands its other tasks to another thread first (`block_in_place`), so nothing else waits
/// for it; outside a runtime, or on a current-thread runtime (where there is no other
/// worker to hand them to), it runs in place.
pub(crate) fn in_place<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_store::Store;
    use riposte_store::prelude::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn store_calls_run_off_the_async_workers() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let worker = std::thread::current().id();
        let (ran_on, keys) = blocking(&store, "kv_keys", |s| {
            s.kv_set("p", "k", b"v", 1024, 1)?;
            Ok((std::thread::current().id(), s.kv_keys("p")?))
        })
        .await
        .unwrap();
        assert_ne!(ran_on, worker, "the transaction ran on the async worker");
        assert_eq!(keys, vec!["k".to_owned()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_store_call_is_an_error_naming_the_operation() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let err = blocking(&store, "kv_get", |_| -> riposte_store::Result<()> {
            panic!("boom")
        })
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("kv_get"), "{text}");
        assert!(text.contains("panicked"), "{text}");
    }

    #[test]
    fn a_wrong_password_is_refused_naming_the_database_but_not_the_password() {
        use riposte_domain::Secret;
        use riposte_store::settings::PostgresConfig;
        let server = riposte_store::testing::TestDatabase::postgres();
        let riposte_store::testing::TestDatabase::Postgres { shown, .. } = &server else {
            unreachable!("a PostgreSQL test database")
        };
        let postgres = PostgresConfig::new(shown, Secret::new("hunter2-wrong")).unwrap();
        let err = open_store(&DatabaseConfig::postgres(postgres)).unwrap_err();
        let text = format!("{err:#} {err:?}");
        assert!(
            text.contains(shown.trim_start_matches("postgres://")),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            err.chain().any(|e| e
                .downcast_ref::<riposte_store::Error>()
                .is_some_and(riposte_store::Error::is_unreachable)),
            "{text}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = open_store(&DatabaseConfig::sqlite(&path)).unwrap();
        store.kv_set("p", "k", b"v", 1024, 1).unwrap();
        assert!(path.is_file(), "SQLite opens at its path");
    }

    #[test]
    fn in_place_runs_outside_a_runtime_too() {
        assert_eq!(in_place(|| 7), 7);
    }
}
