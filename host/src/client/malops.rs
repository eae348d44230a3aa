//! Malop retrieval (`crimes/unified`, `detection/inbox`, `mmng/v2/malops`), details,
//! status and comments.

use super::http::{Body, Call, Safety, segment};
use super::parse;
use super::{Client, Comment, Error, MalopsPage, Result};
use crate::domain::{ElementKind, Malop, MalopId, ManagementStatus, TimestampMs};
use reqwest::Method;
use serde_json::{Value, json};

/// The most Malops one `crimes/unified` call asks for.
pub const RESULT_LIMIT: u32 = 10_000;
/// Page size for `mmng/v2/malops`.
pub const MMNG_PAGE_SIZE: u32 = 100;
/// Upper bound of pages read in one listing (a guard against a server that never ends).
pub const MAX_PAGES: u32 = 1_000;

impl Client {
    /// `crimes/unified` for one element kind, Malops updated after `since` (server ms).
    pub async fn malops_updated_since(
        &self,
        kind: ElementKind,
        since: TimestampMs,
    ) -> Result<Vec<Malop>> {
        let filters = json!([{"facetName": "malopLastUpdateTime", "values": [since],
                              "filterType": "GreaterThan"}]);
        self.crimes_unified(kind, None, filters).await
    }

    /// `crimes/unified` for both kinds (MalopProcess, then MalopLogonSession).
    pub async fn all_malops_updated_since(&self, since: TimestampMs) -> Result<Vec<Malop>> {
        let mut all = Vec::new();
        for kind in ElementKind::ALL {
            all.extend(self.malops_updated_since(kind, since).await?);
        }
        Ok(all)
    }

    /// Malops of both kinds whose last update is in `[since, until)` (server ms): the
    /// plugins' `list-malops`.
    pub async fn malops_updated_in(
        &self,
        since: TimestampMs,
        until: TimestampMs,
    ) -> Result<Vec<Malop>> {
        let mut all = self
            .all_malops_updated_since(since.saturating_sub(1))
            .await?;
        all.retain(|m| m.last_update_time < until);
        Ok(all)
    }

    /// `crimes/unified` for given Malop ids of one kind.
    pub async fn malops_by_id(&self, kind: ElementKind, ids: &[MalopId]) -> Result<Vec<Malop>> {
        self.crimes_unified(kind, Some(ids), Value::Null).await
    }

    async fn crimes_unified(
        &self,
        kind: ElementKind,
        ids: Option<&[MalopId]>,
        filters: Value,
    ) -> Result<Vec<Malop>> {
        let mut path = json!({"requestedType": kind.as_api(), "result": true, "filters": filters});
        if let Some(ids) = ids {
            path["guidList"] = json!(ids);
        }
        let body = json!({"totalResultLimit": RESULT_LIMIT, "perGroupLimit": RESULT_LIMIT,
            "perFeatureLimit": 100, "templateContext": "MALOP", "customFields": [],
            "queryPath": [path]});
        let call = Call::post("/rest/crimes/unified", body, Safety::Repeatable);
        self.fetch(call, |b| parse::crimes_unified(b, kind)).await
    }

    /// `detection/inbox` between two server times (ms).
    pub async fn inbox(&self, start: TimestampMs, end: TimestampMs) -> Result<Vec<Malop>> {
        let body = json!({"startTime": start, "endTime": end});
        let call = Call::post("/rest/detection/inbox", body, Safety::Repeatable);
        self.fetch(call, parse::inbox).await
    }

    /// One page of `mmng/v2/malops` (item offset).
    pub async fn mmng_page(
        &self,
        from: TimestampMs,
        to: TimestampMs,
        offset: u64,
        page_size: u32,
    ) -> Result<MalopsPage> {
        let body = json!({"search": {}, "filter": {}, "range": {"from": from, "to": to},
            "pagination": {"pageSize": page_size, "offset": offset},
            "federation": {"groups": []},
            "sort": [{"field": "LastUpdateTime", "order": "asc"}]});
        let call = Call::post("/rest/mmng/v2/malops", body, Safety::Repeatable);
        self.fetch(call, parse::mmng_page).await
    }

    /// Every Malop of `mmng/v2/malops` in a time range: item-offset paging until `totalHits`.
    pub async fn mmng_malops(&self, from: TimestampMs, to: TimestampMs) -> Result<Vec<Malop>> {
        let mut all: Vec<Malop> = Vec::new();
        let mut offset = 0u64;
        for _ in 0..MAX_PAGES {
            let page = self.mmng_page(from, to, offset, MMNG_PAGE_SIZE).await?;
            let got = page.malops.len() as u64;
            all.extend(page.malops);
            offset += u64::from(MMNG_PAGE_SIZE);
            if got == 0 || offset >= page.total_hits {
                return Ok(all);
            }
        }
        Err(Error::Api {
            endpoint: "POST /rest/mmng/v2/malops".into(),
            status: "TOO_MANY_PAGES".into(),
            message: format!("more than {MAX_PAGES} pages; narrow the time range"),
        })
    }

    /// Finds a Malop by id among both kinds (without enrichment).
    pub async fn get_malop(&self, id: &MalopId) -> Result<Malop> {
        for kind in ElementKind::ALL {
            let ids = std::slice::from_ref(id);
            if let Some(m) = self.malops_by_id(kind, ids).await?.into_iter().next() {
                return Ok(m);
            }
        }
        Err(Error::NotFound {
            what: format!("Malop {id}"),
        })
    }

    /// `crimes/status`: sets a Malop's management status (body is a map id → status).
    pub async fn set_malop_status(&self, id: &MalopId, status: ManagementStatus) -> Result<()> {
        let value = status.as_api().ok_or_else(|| {
            Error::Config("cannot set a Malop to the Unknown management status".into())
        })?;
        let body = json!({ id.as_str(): value });
        let call = Call::post("/rest/crimes/status", body, Safety::Once);
        self.fetch(call, parse::status_reply).await
    }

    /// `crimes/comment/{id}`: adds a comment; the body is the raw text.
    pub async fn add_comment(&self, id: &MalopId, text: &str) -> Result<()> {
        let call = Call {
            method: Method::POST,
            path: format!("/rest/crimes/comment/{}", segment(id.as_str())),
            body: Body::Text(text.to_owned()),
            safety: Safety::Once,
        };
        self.fetch(call, parse::comment_reply).await
    }

    /// `crimes/get-comments`: the comments of a Malop (body = the bare guid).
    pub async fn comments(&self, id: &MalopId) -> Result<Vec<Comment>> {
        let call = Call {
            method: Method::POST,
            path: "/rest/crimes/get-comments".into(),
            body: Body::Text(id.as_str().to_owned()),
            safety: Safety::Repeatable,
        };
        self.fetch(call, parse::comments).await
    }
}
