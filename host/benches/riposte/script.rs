//! The straightforward script of issue 15's outbreak benchmark: what an operator would write
//! without riposte. One session, then one Malop after the other: list the ransomware Malops
//! updated since a time, and for each read its details (visualsearch), its machines' sensors,
//! isolate the connected machines not yet isolated, and kill the suspect processes on the
//! connected machines. Plain `reqwest`, sequential, no retries, no ledger, no audit. It
//! reads the replies with riposte's parsers (`riposte_client::parse`), which a script would
//! replace by its own JSON handling at about the same cost.

use crate::fixtures::{self, USER};
use anyhow::Context;
use riposte_client::parse;
use riposte_domain::{ElementKind, Malop};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// What the script read and sent.
#[derive(Debug, Default)]
pub struct ScriptRun {
    /// Ransomware Malops it contained.
    pub malops: usize,
    /// Requests it made, login included.
    pub requests: usize,
    /// Of which isolation and kill requests.
    pub containment: usize,
}

/// Which details the script reads per Malop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Details {
    /// The three visualsearch queries riposte's details make (suspects, files, connections).
    AsRiposte,
    /// Only the suspects, which the containment needs.
    SuspectsOnly,
}

struct Session {
    http: reqwest::Client,
    base: String,
    cookie: String,
    requests: usize,
}

impl Session {
    async fn post(&mut self, path: &str, body: &Value) -> anyhow::Result<Vec<u8>> {
        self.requests += 1;
        let reply = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        anyhow::ensure!(
            reply.status().is_success(),
            "POST {path}: {}",
            reply.status()
        );
        Ok(reply.bytes().await?.to_vec())
    }

    /// The result elements of a visualsearch query path.
    async fn search(
        &mut self,
        path: Value,
        fields: &[&str],
    ) -> anyhow::Result<Vec<riposte_client::Element>> {
        let body = json!({"queryPath": path, "totalResultLimit": 1000, "perGroupLimit": 100,
            "perFeatureLimit": 100, "templateContext": "SPECIFIC", "queryTimeout": 120000,
            "customFields": fields});
        let bytes = self.post("/rest/visualsearch/query/simple", &body).await?;
        parse::visual_elements(&bytes).map_err(|e| anyhow::anyhow!("visualsearch: {e}"))
    }
}

fn from_malop(malop: &Malop, feature: &str) -> Value {
    let kind = malop.kind.as_api();
    json!({"requestedType": kind, "guidList": [malop.id], "filters": [],
           "connectionFeature": {"elementInstanceType": kind, "featureName": feature}})
}

/// Contains every ransomware process Malop updated after `since_ms` (server clock) on the
/// server at `base`, one after the other.
pub async fn contain_all(base: &str, since_ms: i64, details: Details) -> anyhow::Result<ScriptRun> {
    let (http, cookie) = fixtures::login_plain(base).await?;
    let mut s = Session {
        http,
        base: base.to_owned(),
        cookie,
        requests: 1,
    };
    let mut run = ScriptRun::default();
    let list = json!({"totalResultLimit": 10_000, "perGroupLimit": 10_000,
        "perFeatureLimit": 100, "templateContext": "MALOP", "customFields": [],
        "queryPath": [{"requestedType": ElementKind::Process.as_api(), "result": true,
            "filters": [{"facetName": "malopLastUpdateTime", "values": [since_ms],
                         "filterType": "GreaterThan"}]}]});
    let bytes = s.post("/rest/crimes/unified", &list).await?;
    let malops = parse::crimes_unified(&bytes, ElementKind::Process)
        .map_err(|e| anyhow::anyhow!("crimes/unified: {e}"))?;
    for malop in malops.iter().filter(|m| m.detection_type == "RANSOMWARE") {
        run.malops += 1;
        let suspects = s
            .search(
                json!([from_malop(malop, "suspects"),
                       {"requestedType": "Process", "filters": [], "isResult": true}]),
                &["elementDisplayName", "ownerMachine"],
            )
            .await?;
        if details == Details::AsRiposte {
            s.search(
                json!([from_malop(malop, "filesToRemediate"),
                       {"requestedType": "File", "filters": [], "isResult": true}]),
                &[
                    "elementDisplayName",
                    "md5String",
                    "sha1String",
                    "ownerMachine",
                ],
            )
            .await?;
            s.search(
                json!([from_malop(malop, "suspects"),
                       {"requestedType": "Process", "filters": [],
                        "connectionFeature": {"elementInstanceType": "Process", "featureName": "connections"}},
                       {"requestedType": "Connection", "filters": [], "isResult": true}]),
                &["elementDisplayName", "remoteAddressCanonicalString", "domainName"],
            )
            .await?;
        }
        let names: Vec<&str> = malop.machines.iter().map(|m| m.name.as_str()).collect();
        let query = json!({"limit": 500, "offset": 0, "sortingFieldName": "machineName",
            "sortDirection": "ASC",
            "filters": [{"fieldName": "machineName", "operator": "Equals", "values": names}]});
        let bytes = s.post("/rest/sensors/query", &query).await?;
        let sensors = parse::sensors_page(&bytes)
            .map_err(|e| anyhow::anyhow!("sensors/query: {e}"))?
            .sensors;
        // The Malop's connected machines (guid) and the pylumIds of those not yet isolated.
        let mut connected = BTreeSet::new();
        let mut isolate = Vec::new();
        for machine in &malop.machines {
            let sensor = sensors
                .iter()
                .find(|x| x.machine_name.eq_ignore_ascii_case(&machine.name));
            if let Some(sensor) = sensor.filter(|x| x.is_online()) {
                connected.insert(machine.guid.as_str().to_owned());
                if !sensor.isolated {
                    isolate.push(sensor.pylum_id.as_str().to_owned());
                }
            }
        }
        if !isolate.is_empty() {
            let body = json!({"pylumIds": isolate, "malopId": malop.id});
            s.post("/rest/monitor/global/commands/isolate", &body)
                .await?;
            run.containment += 1;
        }
        let mut by_machine: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for suspect in &suspects {
            let owner = suspect
                .refs("ownerMachine")
                .first()
                .map(|r| r.guid.clone())
                .unwrap_or_default();
            if connected.contains(&owner) {
                by_machine
                    .entry(owner)
                    .or_default()
                    .push(json!({"targetId": suspect.guid, "actionType": "KILL_PROCESS"}));
            }
        }
        if !by_machine.is_empty() {
            let body = json!({"initiatorUserName": USER, "malopId": malop.id,
                              "actionsByMachine": by_machine});
            s.post("/rest/remediate", &body).await?;
            run.containment += 1;
        }
    }
    run.requests = s.requests;
    Ok(run)
}
