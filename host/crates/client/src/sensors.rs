//! `sensors/query`: machine → pylumId, connection and isolation state.

use super::http::{Call, Safety};
use super::malops::MAX_PAGES;
use super::parse;
use super::{Client, Error, Result, Sensor, SensorStatus, SensorsPage};
use riposte_domain::{MachineGuid, Malop, PylumId};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::OnceCell;

/// Sensors per page.
pub(crate) const SENSOR_PAGE_SIZE: u32 = 500;

impl Client {
    /// One page: `limit` sensors from `offset`, which most servers read as a page index (0,
    /// 1, 2...) and some as an item offset (see [`Client::sensors`]).
    pub async fn sensors_page(
        &self,
        filters: Value,
        offset: u32,
        limit: u32,
    ) -> Result<SensorsPage> {
        let body = json!({"limit": limit, "offset": offset, "filters": filters,
                          "sortingFieldName": "machineName", "sortDirection": "ASC"});
        let call = Call::post("/rest/sensors/query", body, Safety::Repeatable);
        self.fetch(call, parse::sensors_page).await
    }

    /// Every sensor matching `filters` (`[{"fieldName", "operator", "values"}]`), paging
    /// while `hasMoreResults`.
    pub async fn sensors(&self, filters: Value) -> Result<Vec<Sensor>> {
        self.sensors_in_pages(filters, SENSOR_PAGE_SIZE).await
    }

    /// [`Client::sensors`] in pages of `limit`. Servers differ on `offset` (§6): most read a
    /// page index, some an item offset. It is sent as a page index; a second page that
    /// repeats sensors of the first shows an item-offset server, and the listing goes on
    /// from the number of sensors read. A sensor is listed once.
    async fn sensors_in_pages(&self, filters: Value, limit: u32) -> Result<Vec<Sensor>> {
        let mut all: Vec<Sensor> = Vec::new();
        // A sensor by its pylumId and machine: an archived sensor and its machine's new one
        // can share a pylumId (it is built from the organisation, host name and MAC).
        let mut seen: HashSet<(PylumId, Option<MachineGuid>, SensorStatus)> = HashSet::new();
        let (mut offset, mut item_offsets) = (0u32, false);
        for _ in 0..MAX_PAGES {
            let got = self.sensors_page(filters.clone(), offset, limit).await?;
            let answered = got.sensors.len();
            let fresh: Vec<Sensor> = got
                .sensors
                .into_iter()
                .filter(|s| seen.insert((s.pylum_id.clone(), s.machine_guid.clone(), s.status)))
                .collect();
            // At offset 1 an item-offset server repeats all but one sensor of the first
            // page; a sensor moved between pages of a page-index server repeats a few.
            if offset > 0 && !item_offsets && fresh.len() * 2 < answered {
                item_offsets = true;
                tracing::info!(
                    "sensors/query reads `offset` as an item offset on this server, not a page index: paging by items"
                );
            }
            let done = !got.has_more || fresh.is_empty();
            all.extend(fresh);
            if done {
                return Ok(all);
            }
            offset = if item_offsets {
                offset.saturating_add(u32::try_from(answered).unwrap_or(u32::MAX))
            } else {
                offset + 1
            };
        }
        Err(Error::Api {
            endpoint: "POST /rest/sensors/query".into(),
            status: "TOO_MANY_PAGES".into(),
            message: format!("more than {MAX_PAGES} pages of sensors"),
        })
    }

    /// The sensors of the named machines (`machineName` EqualsIgnoreCase any of `names`: a
    /// Malop and the sensor list need not spell a machine's name in the same case). A server
    /// that refuses that query as a bad one (HTTP 400, what servers answer a query they do
    /// not take) is asked with `Equals` from then on; other failures are failures.
    pub async fn sensors_by_name(&self, names: &[&str]) -> Result<Vec<Sensor>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let by = |operator: &str| json!([{"fieldName": "machineName", "operator": operator, "values": names}]);
        if !self.names_exact.load(Ordering::Relaxed) {
            match self.sensors(by("EqualsIgnoreCase")).await {
                Err(error @ Error::Refused { status: 400, .. }) => {
                    let exact = self.sensors(by("Equals")).await?;
                    tracing::warn!(
                        "sensors/query refused an EqualsIgnoreCase filter on machineName ({error}); matching machine names exactly from now on"
                    );
                    self.names_exact.store(true, Ordering::Relaxed);
                    return Ok(exact);
                }
                answer => return answer,
            }
        }
        self.sensors(by("Equals")).await
    }

    /// The sensors with these pylumIds (`pylumId` Equals any of them, [`NAMES_PER_QUERY`] per
    /// query). Only those are returned, whatever else the server lists (one that ignores the
    /// filter lists them all).
    pub async fn sensors_by_pylum_id(&self, ids: &[PylumId]) -> Result<Vec<Sensor>> {
        let wanted: HashSet<&PylumId> = ids.iter().collect();
        let mut sensors = Vec::new();
        for chunk in ids.chunks(NAMES_PER_QUERY) {
            let filters = json!([{"fieldName": "pylumId", "operator": "Equals", "values": chunk}]);
            match self.sensors(filters).await {
                Ok(found) => sensors.extend(found),
                // The notes show only `machineName` filters: a server that refuses one on
                // `pylumId` is asked for every sensor, once.
                Err(error) if error.refused_query() => {
                    tracing::warn!(
                        "sensors/query refused a pylumId filter ({error}); listing every sensor instead"
                    );
                    sensors = self.sensors(json!([])).await?;
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        sensors.retain(|s| wanted.contains(&s.pylum_id));
        Ok(sensors)
    }
}

/// Machine names (or pylumIds) per `sensors/query`: one filter of this many values answers
/// in a page or two.
const NAMES_PER_QUERY: usize = 500;

/// The sensors of the machines of a batch of Malops, read with one `sensors/query` (per
/// [`NAMES_PER_QUERY`] machine names) when the first Malop of the batch needs them, and
/// shared by every Malop of the batch: a cycle that reads 200 Malops asks for sensors once,
/// not 200 times. Cheap to clone (the clones share the answer).
#[derive(Clone, Debug)]
pub struct SensorBatch {
    shared: Arc<Batch>,
}

#[derive(Debug)]
struct Batch {
    names: Vec<String>,
    answer: OnceCell<std::result::Result<SensorsRead, Arc<Error>>>,
}

/// A batch's sensors, and when they were read.
#[derive(Clone, Debug)]
pub struct SensorsRead {
    /// The sensors of the batch's machines.
    pub sensors: Arc<[Sensor]>,
    /// When the whole answer was in hand (this host's monotonic clock): it shows the
    /// machines as they were at some moment before this one.
    pub answered: Instant,
}

impl SensorBatch {
    /// A batch for the machines of `malops` (every spelling kept, for a server that matches
    /// names exactly; see [`Client::sensors_by_name`]).
    pub fn of<'a>(malops: impl IntoIterator<Item = &'a Malop>) -> Self {
        let mut names: Vec<String> = malops
            .into_iter()
            .flat_map(|m| m.machines.iter().map(|machine| machine.name.clone()))
            .filter(|name| !name.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        Self {
            shared: Arc::new(Batch {
                names,
                answer: OnceCell::new(),
            }),
        }
    }

    /// The machine names the batch asks for.
    pub fn names(&self) -> &[String] {
        &self.shared.names
    }

    /// The batch's sensors, read through `client` by the first caller; later callers (and
    /// callers waiting meanwhile) share that answer, success or failure.
    pub async fn get(&self, client: &Client) -> std::result::Result<SensorsRead, Arc<Error>> {
        self.shared
            .answer
            .get_or_init(|| async {
                let mut all = Vec::new();
                for names in self.shared.names.chunks(NAMES_PER_QUERY) {
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    all.extend(client.sensors_by_name(&names).await.map_err(Arc::new)?);
                }
                Ok(SensorsRead {
                    sensors: all.into(),
                    answered: Instant::now(),
                })
            })
            .await
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientConfig, Credentials};
    use riposte_sim::{SimConfig, Simulator};

    #[tokio::test]
    async fn sensors_are_listed_once_whether_offset_is_a_page_or_an_item() {
        let config = SimConfig::default();
        let credentials = Credentials::new(config.username.clone(), config.password.clone());
        let sim = Simulator::start(config).await.unwrap();
        let client = Client::new(ClientConfig::new(sim.base_url(), credentials)).unwrap();
        let total = sim.machines().len();
        assert!(total > 9, "{total} sensors: more than three pages");
        for item in [false, true] {
            sim.with_state(|s| s.sensor_offset_is_item = item);
            sim.clear_requests();
            let all = client.sensors_in_pages(json!([]), 3).await.unwrap();
            let ids: HashSet<&PylumId> = all.iter().map(|s| &s.pylum_id).collect();
            assert_eq!(
                (all.len(), ids.len()),
                (total, total),
                "item offsets: {item}"
            );
            let queries = sim.count("POST", "/rest/sensors/query");
            let pages = total.div_ceil(3);
            assert!(
                queries <= pages + 1,
                "{queries} queries for {pages} pages (item offsets: {item})"
            );
        }
    }
}
