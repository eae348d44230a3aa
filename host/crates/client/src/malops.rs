//! Malop retrieval (`crimes/unified`, `detection/inbox`, `mmng/v2/malops`), details,
//! status and comments.

use super::http::{Body, Call, Safety, segment};
use super::parse;
use super::{Client, Comment, Error, MalopListing, MalopsPage, Result};
use reqwest::Method;
use riposte_domain::{ElementKind, Malop, MalopId, ManagementStatus, TimestampMs};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The most Malops one `crimes/unified` call asks for: a real server's own limit.
pub const RESULT_LIMIT: u32 = 10_000;
/// The most `crimes/unified` queries one listing makes while narrowing its time window.
const MAX_WINDOWS: u32 = 4_096;

/// A window of `malopLastUpdateTime`: strictly after `after`, strictly before `before`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    after: TimestampMs,
    before: Option<TimestampMs>,
}

impl Window {
    /// Narrower windows covering this one, given the Malops an overflowing answer held (all
    /// inside it); empty when it spans a single millisecond and cannot be narrowed.
    fn split(self, seen: &[Malop]) -> Vec<Window> {
        match self.before {
            // Open-ended: what is newer than the newest seen, and a closed window below it.
            None => {
                let newest = seen.iter().map(|m| m.last_update_time).max();
                match newest {
                    Some(newest) if newest > self.after => vec![
                        Window {
                            after: self.after,
                            before: Some(newest.saturating_add(1)),
                        },
                        Window {
                            after: newest,
                            before: None,
                        },
                    ],
                    _ => Vec::new(),
                }
            }
            // Closed: halves, while more than one millisecond is inside.
            Some(before) => self.halves_below(before),
        }
    }

    /// Narrower windows covering this one when the server answered nothing because it is too
    /// large (`QUERY_LIMIT_CROSSED`, `TIMEOUT_ERROR`): halves, an open one halved at the time
    /// between its start and `now` (its upper half stays open, so a server clock ahead of
    /// ours loses nothing); empty when it cannot be narrowed.
    fn halve(self, now: TimestampMs) -> Vec<Window> {
        self.halves_below(self.before.unwrap_or(now))
    }

    /// This window in two, split halfway between its start and `before` (its upper half
    /// ends where this one does); empty when no more than a millisecond lies between.
    fn halves_below(self, before: TimestampMs) -> Vec<Window> {
        if before - self.after <= 2 {
            return Vec::new();
        }
        let mid = self.after + (before - self.after) / 2;
        vec![
            Window {
                after: self.after,
                before: Some(mid.saturating_add(1)),
            },
            Window {
                after: mid,
                before: self.before,
            },
        ]
    }
}

/// Adds `malops` to `found`, keeping the newest update of each.
fn keep_newest(found: &mut BTreeMap<MalopId, Malop>, malops: Vec<Malop>) {
    for malop in malops {
        let newer = found
            .get(&malop.id)
            .is_none_or(|m| m.last_update_time < malop.last_update_time);
        if newer {
            found.insert(malop.id.clone(), malop);
        }
    }
}

/// Page size for `mmng/v2/malops`.
pub(crate) const MMNG_PAGE_SIZE: u32 = 100;
/// Upper bound of pages read in one listing (a guard against a server that never ends).
pub(crate) const MAX_PAGES: u32 = 1_000;

impl Client {
    /// `crimes/unified` for one element kind, Malops updated after `since` (server ms).
    ///
    /// crimes/unified has no paging, only a result limit: an answer that holds fewer Malops
    /// than matched (`totalPossibleResults`) is not taken as all. The time window is narrowed
    /// (below the newest update seen, then halved) until every piece fits, and the log says
    /// so; a window of one millisecond that still overflows is logged as an error and what
    /// came back is used, as when the server refuses or ignores the `LessThan` filter that
    /// closes a narrowed window (then only open windows, `GreaterThan` alone, are read).
    ///
    /// A partial answer (`PARTIAL_SUCCESS`: a detection server did not answer) is used and
    /// logged; [`Client::malop_listing`] says whether one came.
    pub async fn malops_updated_since(
        &self,
        kind: ElementKind,
        since: TimestampMs,
    ) -> Result<Vec<Malop>> {
        Ok(self.malop_listing(kind, since).await?.malops)
    }

    /// [`Client::malops_updated_since`], saying whether Malops may be missing.
    pub async fn malop_listing(
        &self,
        kind: ElementKind,
        since: TimestampMs,
    ) -> Result<MalopListing> {
        self.malop_listing_within(kind, since, MAX_WINDOWS).await
    }

    /// [`Client::malop_listing`] in at most `max_queries` queries: past them, the windows
    /// not read make the listing incomplete.
    async fn malop_listing_within(
        &self,
        kind: ElementKind,
        since: TimestampMs,
        max_queries: u32,
    ) -> Result<MalopListing> {
        let mut incomplete = false;
        let mut found: BTreeMap<MalopId, Malop> = BTreeMap::new();
        let mut machines_cut: BTreeMap<MalopId, u64> = BTreeMap::new();
        let mut windows = vec![Window {
            after: since,
            before: None,
        }];
        let mut queries = 0u32;
        // A window is split only if every window waiting, and its pieces, can still be read
        // within the budget: a split never leaves a piece unread.
        let fits = |queries: u32, waiting: &[Window], pieces: &[Window]| {
            queries as usize + waiting.len() + pieces.len() <= max_queries as usize
        };
        // Whether the server cannot narrow a window: it refuses, or ignores, the `LessThan`
        // filter that closes one (the notes saw only `GreaterThan` in use).
        let mut unnarrowable = false;
        while let Some(window) = windows.pop() {
            if unnarrowable && window.before.is_some() {
                // It would answer as the wider window did (or be refused).
                continue;
            }
            if queries >= max_queries {
                tracing::error!(
                    kind = kind.as_api(),
                    "crimes/unified: {queries} queries did not list every Malop; the listing is incomplete"
                );
                incomplete = true;
                break;
            }
            queries += 1;
            let page = match self.crimes_unified_window(kind, window).await {
                Ok(page) => page,
                Err(error) if window.before.is_some() && error.refused_query() => {
                    tracing::error!(
                        kind = kind.as_api(),
                        "crimes/unified refused a time window closed with LessThan ({error}): windows cannot be narrowed on this server; what the wider answer held is used, and the listing is incomplete"
                    );
                    (unnarrowable, incomplete) = (true, true);
                    continue;
                }
                Err(error) if error.query_too_large() => {
                    let pieces = window.halve(riposte_domain::now_ms());
                    if fits(queries, &windows, &pieces) && !pieces.is_empty() {
                        tracing::warn!(
                            kind = kind.as_api(), after = window.after, before = ?window.before,
                            "crimes/unified answered a time window as too large ({error}): halving it"
                        );
                        windows.extend(pieces);
                    } else {
                        tracing::error!(
                            kind = kind.as_api(), after = window.after, before = ?window.before,
                            "crimes/unified answered a time window as too large ({error}) and it cannot be narrowed further; its Malops are not seen this cycle, and the listing is incomplete"
                        );
                        incomplete = true;
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            if let Some(message) = &page.partial {
                incomplete = true;
                tracing::warn!(
                    kind = kind.as_api(), after = window.after, before = ?window.before,
                    "crimes/unified answered PARTIAL_SUCCESS (some detection servers did not answer: {message}); the Malops of those servers are missing from this answer"
                );
            }
            if let Some(before) = window.before
                && !unnarrowable
                && page.malops.iter().any(|m| m.last_update_time >= before)
            {
                tracing::error!(
                    kind = kind.as_api(),
                    "crimes/unified ignores the LessThan filter that closes a time window: windows cannot be narrowed on this server, and the listing is incomplete"
                );
                (unnarrowable, incomplete) = (true, true);
            }
            let got = page.malops.len() as u64;
            let overflow = page.total_hits > got;
            let pieces = if overflow && !unnarrowable {
                window.split(&page.malops)
            } else {
                Vec::new()
            };
            // What an overflowing answer holds is kept too: if its pieces cannot be read,
            // it is all there is.
            keep_newest(&mut found, page.malops);
            machines_cut.extend(page.machines_cut);
            if overflow && fits(queries, &windows, &pieces) && !pieces.is_empty() {
                tracing::warn!(
                    kind = kind.as_api(), after = window.after, before = ?window.before,
                    "crimes/unified returned {got} of {} Malops (its result limit): narrowing the time window",
                    page.total_hits
                );
                windows.extend(pieces);
                continue;
            }
            if overflow {
                // Pieces left unread for want of queries: the listing lacks their Malops.
                incomplete |= !pieces.is_empty();
                tracing::error!(
                    kind = kind.as_api(), after = window.after, before = ?window.before,
                    "crimes/unified returned {got} of {} Malops and the window cannot be narrowed further; the rest is not seen this cycle",
                    page.total_hits
                );
            }
        }
        if queries > 1 {
            tracing::info!(
                kind = kind.as_api(),
                since,
                "read {} Malops in {queries} time windows",
                found.len()
            );
        }
        let mut malops: Vec<Malop> = found.into_values().collect();
        malops.sort_by(|a, b| (a.last_update_time, &a.id).cmp(&(b.last_update_time, &b.id)));
        self.complete_machines(kind, &mut malops, &machines_cut)
            .await;
        Ok(MalopListing { malops, incomplete })
    }

    async fn crimes_unified_window(&self, kind: ElementKind, window: Window) -> Result<MalopsPage> {
        let mut filters = vec![json!({"facetName": "malopLastUpdateTime",
            "values": [window.after], "filterType": "GreaterThan"})];
        if let Some(before) = window.before {
            filters.push(
                json!({"facetName": "malopLastUpdateTime", "values": [before],
                "filterType": "LessThan"}),
            );
        }
        let path = json!({"requestedType": kind.as_api(), "result": true, "filters": filters});
        let call = Call::post(
            "/rest/crimes/unified",
            self.crimes_unified_body(path),
            Safety::Repeatable,
        );
        self.fetch(call, |b| parse::crimes_unified_page(b, kind))
            .await
    }

    /// `crimes/unified` for both kinds (MalopProcess, then MalopLogonSession); a listing
    /// that may lack Malops (see [`MalopListing::incomplete`]) is an error here.
    pub async fn all_malops_updated_since(&self, since: TimestampMs) -> Result<Vec<Malop>> {
        self.all_malops_updated_within(since, MAX_WINDOWS).await
    }

    /// [`Client::all_malops_updated_since`] in at most `max_queries` queries per kind.
    async fn all_malops_updated_within(
        &self,
        since: TimestampMs,
        max_queries: u32,
    ) -> Result<Vec<Malop>> {
        let mut all = Vec::new();
        for kind in ElementKind::ALL {
            let listing = self.malop_listing_within(kind, since, max_queries).await?;
            if listing.incomplete {
                return Err(Error::Api {
                    endpoint: "POST /rest/crimes/unified".into(),
                    status: "INCOMPLETE".into(),
                    message: format!(
                        "the {} Malops updated since {since} could not all be listed (a detection server did not answer, or a window could not be narrowed)",
                        kind.as_api()
                    ),
                });
            }
            all.extend(listing.malops);
        }
        Ok(all)
    }

    /// Malops of both kinds whose last update is in `[since, until)` (server ms): the
    /// plugins' `list-malops`, in at most `max_queries` `crimes/unified` queries per kind (a
    /// window holding more is an error: the listing would be incomplete).
    pub async fn malops_updated_in(
        &self,
        since: TimestampMs,
        until: TimestampMs,
        max_queries: u32,
    ) -> Result<Vec<Malop>> {
        let mut all = self
            .all_malops_updated_within(since.saturating_sub(1), max_queries)
            .await?;
        all.retain(|m| m.last_update_time < until);
        Ok(all)
    }

    /// `crimes/unified` for given Malop ids of one kind, in one query (without enrichment);
    /// an id the server does not know, or of the other kind, is absent from the answer.
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
        let call = Call::post(
            "/rest/crimes/unified",
            self.crimes_unified_body(path),
            Safety::Repeatable,
        );
        let page = self
            .fetch(call, |b| {
                let page = parse::crimes_unified_page(b, kind)?;
                match page.partial {
                    Some(message) => Err(parse::partial_failure(message)),
                    None => Ok(page),
                }
            })
            .await?;
        let mut malops = page.malops;
        let cut = page.machines_cut.into_iter().collect();
        self.complete_machines(kind, &mut malops, &cut).await;
        Ok(malops)
    }

    fn crimes_unified_body(&self, path: Value) -> Value {
        let limit = self.result_limit;
        let query_timeout_ms = self.timeouts.query_timeout().as_millis() as u64;
        json!({"totalResultLimit": limit, "perGroupLimit": limit,
            "perFeatureLimit": 100, "templateContext": "MALOP", "customFields": [],
            "queryTimeout": query_timeout_ms, "queryPath": [path]})
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

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn an_open_window_splits_below_and_above_the_newest_seen() {
        let open = Window {
            after: 100,
            before: None,
        };
        let seen = [150, 120, 180].map(|t| {
            serde_json::from_value::<riposte_domain::Malop>(serde_json::json!({
                "id": format!("11.{t}"), "kind": "MalopProcess", "display_name": "x",
                "detection_type": "RANSOMWARE", "activity_types": [],
                "management_status": "UNREAD", "priority": "HIGH",
                "creation_time": 0, "last_update_time": t}))
            .expect("a Malop")
        });
        assert_eq!(
            open.split(&seen),
            vec![
                Window {
                    after: 100,
                    before: Some(181)
                },
                Window {
                    after: 180,
                    before: None
                }
            ]
        );
    }

    #[test]
    fn a_closed_window_halves_down_to_one_millisecond() {
        let w = Window {
            after: 100,
            before: Some(200),
        };
        let halves = w.split(&[]);
        assert_eq!(
            halves[0],
            Window {
                after: 100,
                before: Some(151)
            }
        );
        assert_eq!(
            halves[1],
            Window {
                after: 150,
                before: Some(200)
            }
        );
        let one_ms = Window {
            after: 100,
            before: Some(102),
        };
        assert!(one_ms.split(&[]).is_empty(), "only 101 is inside");
    }
}
