//! `classification/update` (always a JSON array) and `classification/download` (CSV).

use super::http::{Call, Safety};
use super::parse;
use super::{Client, Error, ReputationEntry, Result};
use riposte_domain::{KeyKind, ReputationKey, Verdict};
use serde_json::{Value, json};

impl Client {
    /// Sets a custom reputation on keys. `prevent` only applies to file hashes and is refused
    /// for IPs and domains. Sent at most once.
    pub async fn set_reputation(
        &self,
        keys: &[ReputationKey],
        verdict: Verdict,
        prevent: bool,
    ) -> Result<()> {
        if prevent && keys.iter().any(|k| k.kind != KeyKind::FileHash) {
            return Err(Error::Config(
                "prevent is only meaningful for file hashes, not IPs or domains".into(),
            ));
        }
        let verdict = match verdict {
            Verdict::Blacklist => "blacklist",
            Verdict::Whitelist => "whitelist",
        };
        let item = json!({"keys": values(keys)?, "maliciousType": verdict,
                          "prevent": prevent, "remove": false});
        self.classification_update(item).await
    }

    /// Removes the custom reputation of keys (`remove: true`, no `maliciousType`).
    pub async fn remove_reputation(&self, keys: &[ReputationKey]) -> Result<()> {
        let item = json!({"keys": values(keys)?, "prevent": false, "remove": true});
        self.classification_update(item).await
    }

    async fn classification_update(&self, item: Value) -> Result<()> {
        // The body is ALWAYS an array, even for one item.
        let call = Call::post("/rest/classification/update", json!([item]), Safety::Once);
        self.fetch(call, parse::reputation_update).await
    }

    /// `GET /rest/classification/download`: every custom reputation, parsed from CSV.
    pub async fn reputations(&self) -> Result<Vec<ReputationEntry>> {
        self.fetch(
            Call::get("/rest/classification/download"),
            parse::reputation_csv,
        )
        .await
    }
}

fn values(keys: &[ReputationKey]) -> Result<Vec<&str>> {
    if keys.is_empty() || keys.iter().any(|k| k.value.trim().is_empty()) {
        return Err(Error::Config("reputation keys must be non-empty".into()));
    }
    Ok(keys.iter().map(|k| k.value.as_str()).collect())
}
