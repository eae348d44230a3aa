//! The smallest rule: subscribes to every Malop and does nothing with it.
//!
//! It exists to measure the sandbox itself: `host/benches` times a fresh instance plus
//! `on-malop` of this rule through riposte's runtime and through a bare wasmtime host.
//! `riposte plugin build` compiles it into `target/plugins/examples/noop-rule.wasm`.

use riposte_guest::{Error, Info, Malop, Rule, export_rule};

struct Noop;

impl Rule for Noop {
    fn describe() -> Info {
        Info::new("noop-rule", "0.1.0").description("Does nothing; a benchmark baseline")
    }

    fn on_malop(_malop: Malop) -> Result<(), Error> {
        Ok(())
    }
}

export_rule!(Noop);
