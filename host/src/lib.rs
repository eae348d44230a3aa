//! riposte: runs detection-to-remediation rules for Cybereason EDR as sandboxed WebAssembly components.

pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod domain;
pub mod metrics;
pub mod policy;
pub mod progress;
pub mod replay;
pub mod runtime;
pub mod scaffold;
pub mod service;
pub mod sim;
pub mod store;
pub mod toolchain;
