//! `sensors/query`: machine → pylumId, connection and isolation state.

use super::http::{Call, Safety};
use super::malops::MAX_PAGES;
use super::parse;
use super::{Client, Error, Result, Sensor, SensorsPage};
use riposte_domain::{Malop, PylumId};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OnceCell;

/// Sensors per page.
pub(crate) const SENSOR_PAGE_SIZE: u32 = 500;

impl Client {
    /// One page; `page` is a page INDEX (0, 1, 2...), as the server reads `offset`.
    pub async fn sensors_page(&self, filters: Value, page: u32, limit: u32) -> Result<SensorsPage> {
        let body = json!({"limit": limit, "offset": page, "filters": filters,
                          "sortingFieldName": "machineName", "sortDirection": "ASC"});
        let call = Call::post("/rest/sensors/query", body, Safety::Repeatable);
        self.fetch(call, parse::sensors_page).await
    }

    /// Every sensor matching `filters` (`[{"fieldName", "operator", "values"}]`), paging
    /// while `hasMoreResults`.
    pub async fn sensors(&self, filters: Value) -> Result<Vec<Sensor>> {
        let mut all = Vec::new();
        for page in 0..MAX_PAGES {
            let got = self
                .sensors_page(filters.clone(), page, SENSOR_PAGE_SIZE)
                .await?;
            let empty = got.sensors.is_empty();
            all.extend(got.sensors);
            if !got.has_more || empty {
                return Ok(all);
            }
        }
        Err(Error::Api {
            endpoint: "POST /rest/sensors/query".into(),
            status: "TOO_MANY_PAGES".into(),
            message: format!("more than {MAX_PAGES} pages of sensors"),
        })
    }

    /// The sensors of the named machines (`machineName` Equals any of `names`).
    pub async fn sensors_by_name(&self, names: &[&str]) -> Result<Vec<Sensor>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let filters = json!([{"fieldName": "machineName", "operator": "Equals", "values": names}]);
        self.sensors(filters).await
    }

    /// The sensors with these pylumIds (`pylumId` Equals any of `ids`). Only those are
    /// returned, whatever else the server lists (one that ignores the filter lists them all).
    pub async fn sensors_by_pylum_id(&self, ids: &[PylumId]) -> Result<Vec<Sensor>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let filters = json!([{"fieldName": "pylumId", "operator": "Equals", "values": ids}]);
        let mut sensors = self.sensors(filters).await?;
        sensors.retain(|s| ids.contains(&s.pylum_id));
        Ok(sensors)
    }
}

/// Machine names per `sensors/query` of a [`SensorBatch`]: one filter of this many values
/// answers in a page or two.
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
    /// A batch for the machines of `malops` (names compared without case, as the server does).
    pub fn of<'a>(malops: impl IntoIterator<Item = &'a Malop>) -> Self {
        let mut names: Vec<String> = malops
            .into_iter()
            .flat_map(|m| m.machines.iter().map(|machine| machine.name.clone()))
            .filter(|name| !name.is_empty())
            .collect();
        names.sort_by_key(|n| n.to_ascii_lowercase());
        names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
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
