//! `sensors/query`: machine → pylumId, connection and isolation state.

use super::http::{Call, Safety};
use super::malops::MAX_PAGES;
use super::parse;
use super::{Client, Error, Result, Sensor, SensorsPage};
use serde_json::{Value, json};

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
}
