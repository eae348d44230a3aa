//! riposte: runs detection-to-remediation rules for Cybereason EDR as sandboxed WebAssembly components.

pub mod cli;
pub mod client;
pub mod domain;
pub mod runtime;
pub mod sim;
pub mod store;
pub mod toolchain;
