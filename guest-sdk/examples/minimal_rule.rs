//! A complete riposte rule: isolate the connected machines of every ransomware Malop.
//!
//! `riposte plugin build` compiles this example with the plugins (it is part of the plugins
//! workspace) into `target/plugins/examples/minimal-rule.wasm`.

use riposte_guest::{Error, Info, Malop, Rule, export_rule, info, isolation};

struct IsolateRansomware;

impl Rule for IsolateRansomware {
    fn describe() -> Info {
        Info::new("minimal-rule", "0.1.0")
            .description("Isolates the connected machines of ransomware Malops")
            .activity_types(["RANSOMWARE"])
    }

    fn on_malop(malop: Malop) -> Result<(), Error> {
        let guids = malop.guids_of(malop.connected_machines());
        if guids.is_empty() {
            info!("{}: no connected machine to isolate", malop.id);
            return Ok(());
        }
        isolation::isolate(Some(&malop.id), &guids, "ransomware Malop")?.into_result()?;
        Ok(())
    }
}

export_rule!(IsolateRansomware);
