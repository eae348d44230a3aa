//! `remediate` and its follow-ups: progress, status, abort.

use super::http::{Body, Call, Safety, segment};
use super::parse;
use super::{Client, Error, RemediationReport, Result};
use reqwest::Method;
use riposte_domain::{MalopId, RemediationId, RemediationProgress, RemediationTarget};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

const REMEDIATE: &str = "POST /rest/remediate";

impl Client {
    /// `POST /rest/remediate`: starts a remediation; the reply's `statusLog` usually says PENDING.
    ///
    /// Sent at most once. If the outcome is unknown (timeout, reset, 5xx, unreadable reply) the
    /// error is [`Error::OutcomeUnknown`]: call [`Client::find_remediation`] before trying again.
    /// A reply in which every item is final and one failed is [`Error::RemediationFailed`].
    pub async fn remediate(
        &self,
        malop_id: Option<&MalopId>,
        targets: &[RemediationTarget],
    ) -> Result<RemediationReport> {
        if targets.is_empty() {
            return Err(Error::Config(
                "a remediation needs at least one target".into(),
            ));
        }
        let call = Call::post(
            "/rest/remediate",
            self.remediate_body(malop_id, targets),
            Safety::Once,
        );
        let report = self.fetch(call, parse::remediation).await?;
        if report.entries.is_empty() {
            return Err(Error::Api {
                endpoint: REMEDIATE.into(),
                status: "EMPTY_STATUS_LOG".into(),
                message: "the server accepted no target (the given target id is incorrect?)".into(),
            });
        }
        // An item that failed at once while others are still pending is followed with them:
        // the remediation is judged when every item is final.
        if let (RemediationProgress::Failure, Some(failed)) = (report.status(), report.failure()) {
            return Err(Error::RemediationFailed {
                endpoint: REMEDIATE.into(),
                remediation_id: report.remediation_id.to_string(),
                target: failed.target_guid.to_string(),
                message: failed
                    .error
                    .as_ref()
                    .map_or_else(|| "no message".into(), |e| e.message.clone()),
                failed: report
                    .latest()
                    .into_iter()
                    .filter(|e| e.status == RemediationProgress::Failure)
                    .cloned()
                    .collect(),
            });
        }
        Ok(report)
    }

    fn remediate_body(&self, malop_id: Option<&MalopId>, targets: &[RemediationTarget]) -> Value {
        let mut by_machine: Map<String, Value> = Map::new();
        for t in targets {
            let list = by_machine
                .entry(t.machine_guid.as_str())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.push(json!({"targetId": t.target_guid, "actionType": t.kind.as_api()}));
            }
        }
        let mut body =
            json!({"initiatorUserName": self.username(), "actionsByMachine": by_machine});
        if let Some(id) = malop_id {
            body["malopId"] = json!(id);
        }
        body
    }

    /// `GET /rest/remediate/progress/{user}/{malopId}/{remediationId}`. A remediation sent
    /// without a Malop id is asked for with an empty Malop segment (the notes name no other
    /// way; the simulator answers it).
    pub async fn remediation_progress(
        &self,
        malop_id: Option<&MalopId>,
        remediation_id: &RemediationId,
    ) -> Result<RemediationReport> {
        let path = format!(
            "/rest/remediate/progress/{}/{}/{}",
            segment(self.username()),
            segment(malop_id.map_or("", MalopId::as_str)),
            segment(remediation_id.as_str())
        );
        self.fetch(Call::get(path), parse::remediation).await
    }

    /// `GET /rest/remediate/status/{malopId}`: every remediation of a Malop.
    pub async fn remediation_status(&self, malop_id: &MalopId) -> Result<Vec<RemediationReport>> {
        let path = format!("/rest/remediate/status/{}", segment(malop_id.as_str()));
        self.fetch(Call::get(path), parse::remediation_list).await
    }

    /// `POST /rest/remediate/abort/{malopId}/{remediationId}` (no body).
    pub async fn abort_remediation(
        &self,
        malop_id: &MalopId,
        remediation_id: &RemediationId,
    ) -> Result<RemediationReport> {
        let call = Call {
            method: Method::POST,
            path: format!(
                "/rest/remediate/abort/{}/{}",
                segment(malop_id.as_str()),
                segment(remediation_id.as_str())
            ),
            body: Body::Empty,
            safety: Safety::Repeatable,
        };
        self.fetch(call, parse::remediation).await
    }

    /// After [`Error::OutcomeUnknown`]: the remediation of this Malop, if any, whose targets
    /// are exactly `targets` (the newest first). `None` means it was not carried out.
    pub async fn find_remediation(
        &self,
        malop_id: &MalopId,
        targets: &[RemediationTarget],
    ) -> Result<Option<RemediationReport>> {
        let wanted: BTreeSet<_> = targets
            .iter()
            .map(|t| {
                (
                    t.machine_guid.as_str(),
                    t.target_guid.as_str(),
                    Some(t.kind),
                )
            })
            .collect();
        let mut reports = self.remediation_status(malop_id).await?;
        reports.sort_by_key(|r| std::cmp::Reverse(r.start));
        Ok(reports.into_iter().find(|r| {
            let got: BTreeSet<_> = r
                .entries
                .iter()
                .map(|e| (e.machine_guid.as_str(), e.target_guid.as_str(), e.kind))
                .collect();
            got == wanted
        }))
    }

    /// Polls progress until a final status, at most `max_polls` times, sleeping `interval`
    /// between polls (pass `Duration::ZERO` against the simulator).
    pub async fn wait_remediation(
        &self,
        malop_id: Option<&MalopId>,
        remediation_id: &RemediationId,
        max_polls: u32,
        interval: std::time::Duration,
    ) -> Result<RemediationReport> {
        let mut last = None;
        for poll in 0..max_polls {
            if poll > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            let report = self.remediation_progress(malop_id, remediation_id).await?;
            if report.status().is_final() {
                return Ok(report);
            }
            last = Some(report);
        }
        let status = last.map_or(RemediationProgress::Unknown, |r| r.status());
        Err(Error::Api {
            endpoint: "GET /rest/remediate/progress".into(),
            status: format!("{status:?}"),
            message: format!("remediation {remediation_id} not final after {max_polls} polls"),
        })
    }
}
