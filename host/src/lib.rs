//! riposte: runs detection-to-remediation rules for Cybereason EDR as sandboxed WebAssembly components.

pub mod domain;
