//! A rule that makes the same host call many times: the host-call benchmark of
//! `host/benches`.
//!
//! Config: `op` is the import to call and `calls` how many times (default 0: none).
//! - `config-get`: `config.get` of a missing key (answered by the runtime, no policy gate);
//! - `get-malop`: `malops.get-malop` of the invocation's own Malop (policy gate and audit
//!   in the service, no server round trip);
//! - `add-comment`: `bookkeeping.add-comment` with a distinct text each time (gate, action
//!   ledger and audit; shadowed in shadow mode).
//!
//! `riposte plugin build` compiles it into `target/plugins/examples/host-calls.wasm`.

use riposte_guest::{Error, Info, Malop, Rule, bookkeeping, config, export_rule, malops};

struct HostCalls;

impl Rule for HostCalls {
    fn describe() -> Info {
        Info::new("host-calls", "0.1.0").description("Calls one import N times; a benchmark")
    }

    fn on_malop(malop: Malop) -> Result<(), Error> {
        let calls: u32 = config::get_or("calls", "0").parse().unwrap_or(0);
        let op = config::get_or("op", "config-get");
        for i in 0..calls {
            match op.as_str() {
                "get-malop" => {
                    malops::get_malop(&malop.id)?;
                }
                "add-comment" => bookkeeping::add_comment(&malop.id, &format!("bench {i}"))?,
                _ => {
                    config::get("absent");
                }
            }
        }
        Ok(())
    }
}

export_rule!(HostCalls);
