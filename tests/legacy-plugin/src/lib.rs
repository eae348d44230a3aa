//! A rule built against `riposte:plugin@0.1.0`, the contract before 0.2.0, straight from
//! `wit/v0.1.0` with wit-bindgen (no SDK): the end-to-end tests load it next to 0.2.0 plugins
//! to prove that the host still serves plugins built against 0.1.0.
//!
//! For a ransomware Malop it isolates the connected machines and logs the receipt; for any
//! other Malop it logs the parts of the record 0.1.0 has.

wit_bindgen::generate!({ path: "../../wit/v0.1.0", world: "rule" });

// The world's `use`s put `Info`, `Malop` and `Error` at the crate root.
use riposte::plugin::plugin::Subscription;
use riposte::plugin::{isolation, log};

struct Legacy;

fn say(message: &str) {
    log::log(log::Level::Info, message);
}

impl Guest for Legacy {
    fn describe() -> Info {
        Info {
            name: "legacy-rule".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Isolates the connected machines of ransomware Malops (built against riposte:plugin@0.1.0)".into(),
            subscription: Subscription {
                element_kinds: Vec::new(),
                activity_types: Vec::new(),
                detection_types: Vec::new(),
            },
            interval_seconds: None,
        }
    }

    fn on_malop(malop: Malop) -> Result<(), Error> {
        say(&format!(
            "0.1.0 rule sees {} ({:?} priority, {} machine(s), {} suspect(s))",
            malop.id,
            malop.priority,
            malop.machines.len(),
            malop.suspects.len()
        ));
        if !malop
            .activity_types
            .iter()
            .any(|a| a.eq_ignore_ascii_case("RANSOMWARE"))
        {
            return Ok(());
        }
        let guids: Vec<String> = malop
            .machines
            .iter()
            .filter(|m| m.connected && !m.isolated)
            .map(|m| m.guid.clone())
            .collect();
        if guids.is_empty() {
            return Ok(());
        }
        let receipt = isolation::isolate(Some(&malop.id), &guids, "legacy rule: ransomware")?;
        say(&format!(
            "isolation {} {:?}",
            receipt.action_id, receipt.disposition
        ));
        Ok(())
    }

    fn on_interval(_now: i64) -> Result<(), Error> {
        Ok(())
    }
}

export!(Legacy);
