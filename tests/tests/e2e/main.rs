//! End-to-end tests, gathered in one binary: real built plugins, the simulator on loopback,
//! the `riposte` binary, hostile plugins and injected faults.

/// Service tests that hold on either storage backend, each run once per backend: every
/// `async fn NAME(db) { ... }` becomes `mod NAME` with the tests `sqlite` and `postgres`,
/// which call the body with a fresh database of that backend (`ServiceEnv::on(db, ..)`).
/// The PostgreSQL run needs the server `tests/run.sh` starts and fails, saying so, without it.
macro_rules! each_backend {
    ($($(#[doc = $doc:expr])* async fn $name:ident($db:ident) $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use riposte_store::testing::TestDatabase;

            async fn body($db: TestDatabase) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                body(TestDatabase::sqlite()).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                body(TestDatabase::postgres()).await
            }
        }
    )*};
}

mod audit_export;
mod config_load;
mod console_browser;
mod db_copy;
mod example_plugins;
mod fleet;
mod hostile_limits;
mod hostile_service;
mod integrity;
mod metrics;
mod notify;
mod plugin_new;
mod plugin_test_cli;
mod runtime_tasks;
mod sandbox_wasi;
mod service_approvals;
mod service_crash;
mod service_faults;
mod service_reload;
mod service_requests;
mod service_syslog;
mod service_trust;
mod service_watermark;
mod shadow_mode;
mod sim_events;
mod world_check;
