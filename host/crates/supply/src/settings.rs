//! `[signing]` (and a plugin's own `public_keys`): the publisher keys pinned by the operator.

use crate::PublicKey;
use riposte_domain::settings::{Findings, resolve_path};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `[signing]`: the publishers' public keys pinned for every plugin.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Signing {
    /// Public key files (`public_keys`, PEM, resolved against the configuration's directory).
    /// When any is set, every plugin without its own `public_keys` must carry a valid
    /// wasmsign2 signature by one of them.
    pub public_keys: Vec<PathBuf>,
}

impl Signing {
    /// Resolves the key files against `base`, the directory of the configuration file, and
    /// reports each one that does not hold a public key (at `public_keys[i]`).
    pub fn resolve(&mut self, base: &Path) -> Findings {
        let mut findings = Findings::new();
        for (i, path) in self.public_keys.iter_mut().enumerate() {
            *path = resolve_path(base, std::mem::take(path));
            if let Err(e) = PublicKey::from_file(path) {
                findings.at(format!("public_keys[{i}]"), format!("publisher key {e}"));
            }
        }
        findings
    }
}
