//! End-to-end tests, gathered in one binary: real built plugins, the simulator on loopback,
//! the `riposte` binary, hostile plugins and injected faults.

mod config_load;
mod db_copy;
mod example_plugins;
mod fleet;
mod hostile_limits;
mod hostile_service;
mod integrity;
mod metrics;
mod plugin_new;
mod plugin_test_cli;
mod sandbox_wasi;
mod service_approvals;
mod service_crash;
mod service_faults;
mod service_reload;
mod service_syslog;
mod service_watermark;
mod shadow_mode;
mod world_check;
