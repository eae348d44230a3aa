//! Carries out ledgered actions on the server, exactly once, and follows them to a final
//! status.
//!
//! The ledger row exists (state `planned`) before anything is sent. A send whose outcome is
//! unknown (timeout, reset, 5xx after the request left) is never repeated blindly: the
//! action stays unresolved and [`Executor::reconcile`] looks for it on the server first.

use super::audit::Auditor;
use crate::client::{self, Client, IsolationReport, RemediationReport};
use crate::domain::{ActionRequest, MachineGuid, PylumId, RemediationProgress};
use crate::store::{ActionRecord, ActionState, Outcome, RetryDecision, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How remediations are followed and failures retried.
#[derive(Clone, Debug)]
pub struct FollowPolicy {
    /// Progress polls before a remediation is recorded as timed out.
    pub max_polls: u32,
    /// Pause between two polls.
    pub poll_interval: Duration,
    /// Sends of one action that certainly did not reach the server, before giving up.
    pub max_attempts: u32,
}

impl Default for FollowPolicy {
    fn default() -> Self {
        Self {
            max_polls: 30,
            poll_interval: Duration::from_secs(2),
            max_attempts: 3,
        }
    }
}

/// Machine guid → sensor id, from the Malop being handled; the rest is looked up.
pub type PylumDirectory = BTreeMap<MachineGuid, PylumId>;

/// The sensor ids a detailed Malop carries for its machines.
pub fn pylum_directory(malop: &crate::domain::Malop) -> PylumDirectory {
    malop
        .machines
        .iter()
        .filter_map(|m| m.pylum_id.clone().map(|p| (m.guid.clone(), p)))
        .collect()
}

/// Sends actions and records their fate in the store and the audit trail.
pub struct Executor {
    client: Arc<Client>,
    store: Arc<Store>,
    auditor: Arc<Auditor>,
    follow: FollowPolicy,
}

/// Where an action stands after its one send.
pub enum Submitted {
    /// Final (isolation, reputation, status, comment; or a send that failed).
    Final(ActionState),
    /// A remediation the server is working on: follow it.
    Following(RemediationReport),
}

/// What one send achieved.
enum Sent {
    /// Final at once (isolation, reputation, status, comment).
    Done { outcome: Outcome, result: Value },
    /// A remediation the server is working on.
    Remediation(RemediationReport),
}

impl Executor {
    /// An executor over `client`, recording into `store` and `auditor`.
    pub fn new(
        client: Arc<Client>,
        store: Arc<Store>,
        auditor: Arc<Auditor>,
        follow: FollowPolicy,
    ) -> Self {
        Self {
            client,
            store,
            auditor,
            follow,
        }
    }

    /// Sends a `planned` action once, then follows it to its final state. Returns that state.
    pub async fn execute(&self, record: &ActionRecord, pylums: &PylumDirectory) -> ActionState {
        match self.submit(record, pylums).await {
            Submitted::Final(state) => state,
            Submitted::Following(report) => self.follow(record, report).await,
        }
    }

    /// Sends a `planned` action once and records the submission. Actions the server carries
    /// out at once are final here (and audited); a remediation comes back to be followed
    /// with [`Executor::follow`], which need not hold up the caller.
    pub async fn submit(&self, record: &ActionRecord, pylums: &PylumDirectory) -> Submitted {
        let started = std::time::Instant::now();
        let now = now_ms();
        // The decision that allowed the action is on disk before the server hears of it;
        // if the audit trail cannot be forced to disk, nothing is sent.
        if let Err(e) = self.auditor.barrier() {
            let error = format!("not sent: the audit trail could not be forced to disk: {e}");
            let state = self.give_up_or_retry(record, &error);
            self.auditor.action_result(record, state, started.elapsed());
            return Submitted::Final(state);
        }
        let state = match self.send(&record.request, pylums).await {
            Ok(Sent::Done { outcome, result }) => {
                self.mark_submitted(record, None, &result, now);
                self.finish(record, outcome, &result, None)
            }
            Ok(Sent::Remediation(report)) => {
                let result = remediation_json(&report);
                self.mark_submitted(record, Some(&report), &result, now);
                return Submitted::Following(report);
            }
            Err(error) => self.send_failed(record, &error),
        };
        self.auditor.action_result(record, state, started.elapsed());
        Submitted::Final(state)
    }

    /// Follows a submitted remediation to SUCCESS, FAILURE or the follow limit, records and
    /// audits its final state.
    pub async fn follow(&self, record: &ActionRecord, report: RemediationReport) -> ActionState {
        let started = std::time::Instant::now();
        let state = self.follow_remediation(record, report).await;
        self.auditor.action_result(record, state, started.elapsed());
        state
    }

    /// Settles an action a crash left `planned`, `submitted` or `following`: looks for it on
    /// the server before anything is sent again.
    pub async fn reconcile(&self, record: &ActionRecord, pylums: &PylumDirectory) -> ActionState {
        match (&record.state, &record.request) {
            (ActionState::Submitted | ActionState::Following, ActionRequest::Remediate { .. }) => {
                match record.remediation_id.clone() {
                    Some(_) => self.resume_following(record).await,
                    None => self.find_and_follow(record, pylums).await,
                }
            }
            (ActionState::Planned, ActionRequest::Remediate { .. }) => {
                self.find_and_follow(record, pylums).await
            }
            // Anything else is looked for on the server first: only what is not there yet is
            // sent, so a crash between the send and its record never sends it twice.
            (ActionState::Planned | ActionState::Submitted | ActionState::Following, request) => {
                match self.already_applied(request, pylums).await {
                    Ok(true) => {
                        tracing::info!(action = %record.id, "already applied on the server; not sending again");
                        let result = json!({"found_on_server": true});
                        self.mark_submitted(record, None, &result, now_ms());
                        self.finish(record, Outcome::Succeeded, &result, None)
                    }
                    Ok(false) => self.execute(record, pylums).await,
                    Err(error) => self.give_up_or_retry(
                        record,
                        &format!("checking the server before resending: {error}"),
                    ),
                }
            }
            (state, _) => *state,
        }
    }

    async fn find_and_follow(&self, record: &ActionRecord, pylums: &PylumDirectory) -> ActionState {
        let ActionRequest::Remediate { malop_id, targets } = &record.request else {
            return record.state;
        };
        let found = match malop_id {
            Some(malop) => self.client.find_remediation(malop, targets).await,
            None => Ok(None),
        };
        match found {
            Ok(Some(report)) => {
                tracing::info!(action = %record.id, "found on the server after a restart; not sending again");
                let result = remediation_json(&report);
                self.mark_submitted(record, Some(&report), &result, now_ms());
                self.follow(record, report).await
            }
            Ok(None) => self.execute(record, pylums).await,
            Err(error) => self.give_up_or_retry(
                record,
                &format!("looking for the action on the server: {error}"),
            ),
        }
    }

    /// Whether the server already shows the effect of `request` (isolation state, the
    /// reputation list, the Malop's status and comments).
    async fn already_applied(
        &self,
        request: &ActionRequest,
        pylums: &PylumDirectory,
    ) -> Result<bool, client::Error> {
        let c = &self.client;
        Ok(match request {
            ActionRequest::Remediate { .. } => false,
            ActionRequest::Isolate { machines, .. } | ActionRequest::Unisolate { machines, .. } => {
                let want_isolated = matches!(request, ActionRequest::Isolate { .. });
                let sensors = c.sensors(json!([])).await?;
                let ids = pylum_ids_from(machines, pylums, &sensors)?;
                ids.iter().all(|id| {
                    sensors
                        .iter()
                        .any(|s| &s.pylum_id == id && s.isolated == want_isolated)
                })
            }
            ActionRequest::SetReputation {
                keys,
                verdict,
                prevent,
            } => {
                let list = c.reputations().await?;
                keys.iter().all(|k| {
                    list.iter().any(|e| {
                        e.key.eq_ignore_ascii_case(&k.value)
                            && e.verdict == Some(*verdict)
                            && e.prevent == *prevent
                            && !e.remove
                    })
                })
            }
            ActionRequest::RemoveReputation { keys } => {
                let list = c.reputations().await?;
                !keys.iter().any(|k| {
                    list.iter()
                        .any(|e| e.key.eq_ignore_ascii_case(&k.value) && !e.remove)
                })
            }
            ActionRequest::SetStatus { malop_id, status } => {
                c.get_malop(malop_id).await?.management_status == *status
            }
            ActionRequest::AddComment { malop_id, text } => c
                .comments(malop_id)
                .await?
                .iter()
                .any(|comment| comment.message == *text),
        })
    }

    async fn send(
        &self,
        request: &ActionRequest,
        pylums: &PylumDirectory,
    ) -> Result<Sent, client::Error> {
        let c = &self.client;
        Ok(match request {
            ActionRequest::Remediate { malop_id, targets } => {
                Sent::Remediation(c.remediate(malop_id.as_ref(), targets).await?)
            }
            ActionRequest::Isolate { malop_id, machines } => {
                let ids = self.pylum_ids(machines, pylums).await?;
                isolation_done(c.isolate(&ids, malop_id.as_ref()).await?)
            }
            ActionRequest::Unisolate { malop_id, machines } => {
                let ids = self.pylum_ids(machines, pylums).await?;
                isolation_done(c.unisolate(&ids, malop_id.as_ref()).await?)
            }
            ActionRequest::SetReputation {
                keys,
                verdict,
                prevent,
            } => {
                c.set_reputation(keys, *verdict, *prevent).await?;
                done(json!({"outcome": "success"}))
            }
            ActionRequest::RemoveReputation { keys } => {
                c.remove_reputation(keys).await?;
                done(json!({"outcome": "success"}))
            }
            ActionRequest::SetStatus { malop_id, status } => {
                c.set_malop_status(malop_id, *status).await?;
                done(json!({"status": "SUCCESS"}))
            }
            ActionRequest::AddComment { malop_id, text } => {
                c.add_comment(malop_id, text).await?;
                done(json!({"commented": text.chars().count()}))
            }
        })
    }

    /// Sensor ids for `machines`: from the Malop first, then from `sensors/query`.
    async fn pylum_ids(
        &self,
        machines: &[MachineGuid],
        known: &PylumDirectory,
    ) -> Result<Vec<PylumId>, client::Error> {
        if machines.iter().all(|guid| known.contains_key(guid)) {
            return pylum_ids_from(machines, known, &[]);
        }
        let sensors = self.client.sensors(json!([])).await?;
        pylum_ids_from(machines, known, &sensors)
    }

    async fn follow_remediation(
        &self,
        record: &ActionRecord,
        mut report: RemediationReport,
    ) -> ActionState {
        let Some(malop) = report.malop_id.clone().or_else(|| record.malop_id.clone()) else {
            let outcome = outcome_of(report.status()).unwrap_or(Outcome::Succeeded);
            return self.finish(record, outcome, &remediation_json(&report), None);
        };
        for poll in 0..=self.follow.max_polls {
            let progress = report.status();
            self.record_progress(record, progress, &report);
            if let Some(outcome) = outcome_of(progress) {
                let error = report
                    .failure()
                    .and_then(|e| e.error.as_ref())
                    .map(|e| e.message.clone());
                return self.finish(
                    record,
                    outcome,
                    &remediation_json(&report),
                    error.as_deref(),
                );
            }
            if poll == self.follow.max_polls {
                break;
            }
            if !self.follow.poll_interval.is_zero() {
                tokio::time::sleep(self.follow.poll_interval).await;
            }
            report = match self
                .client
                .remediation_progress(&malop, &report.remediation_id)
                .await
            {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(action = %record.id, "remediation progress: {error}");
                    report
                }
            };
        }
        self.finish(
            record,
            Outcome::TimedOut,
            &remediation_json(&report),
            Some("no final status before the follow limit"),
        )
    }

    async fn resume_following(&self, record: &ActionRecord) -> ActionState {
        let (Some(malop), Some(rid)) = (&record.malop_id, &record.remediation_id) else {
            return record.state;
        };
        match self.client.remediation_progress(malop, rid).await {
            Ok(report) => self.follow(record, report).await,
            Err(error) => {
                self.give_up_or_retry(record, &format!("reading remediation progress: {error}"))
            }
        }
    }

    fn send_failed(&self, record: &ActionRecord, error: &client::Error) -> ActionState {
        if error.certainly_not_done() {
            return self.give_up_or_retry(record, &error.to_string());
        }
        match error {
            client::Error::OutcomeUnknown { .. } => {
                // Left unresolved on purpose: reconcile() checks the server before any resend.
                tracing::warn!(action = %record.id, "outcome unknown, will check the server before resending: {error}");
                let _ = self.store.mark_submitted(
                    &record.id,
                    None,
                    &json!({"outcome-unknown": error.to_string()}),
                    now_ms(),
                );
                ActionState::Submitted
            }
            _ => self.finish(
                record,
                Outcome::Failed,
                &json!({"error": error.to_string()}),
                Some(&error.to_string()),
            ),
        }
    }

    fn give_up_or_retry(&self, record: &ActionRecord, error: &str) -> ActionState {
        match self.store.record_failed_attempt(
            &record.id,
            error,
            self.follow.max_attempts,
            now_ms(),
        ) {
            Ok(RetryDecision::Retry { attempts }) => {
                tracing::warn!(action = %record.id, attempts, "not sent ({error}); will retry");
                record.state
            }
            Ok(RetryDecision::GaveUp { .. }) => ActionState::Failed,
            Err(e) => {
                tracing::error!(action = %record.id, "recording a failed attempt: {e}");
                record.state
            }
        }
    }

    fn mark_submitted(
        &self,
        record: &ActionRecord,
        report: Option<&RemediationReport>,
        result: &Value,
        now: i64,
    ) {
        let rid = report.map(|r| &r.remediation_id);
        if let Err(e) = self.store.mark_submitted(&record.id, rid, result, now) {
            tracing::error!(action = %record.id, "recording the submission: {e}");
        }
    }

    fn record_progress(
        &self,
        record: &ActionRecord,
        progress: RemediationProgress,
        report: &RemediationReport,
    ) {
        if let Err(e) =
            self.store
                .record_progress(&record.id, progress, &remediation_json(report), now_ms())
        {
            tracing::error!(action = %record.id, "recording progress: {e}");
        }
    }

    fn finish(
        &self,
        record: &ActionRecord,
        outcome: Outcome,
        result: &Value,
        error: Option<&str>,
    ) -> ActionState {
        let now = now_ms();
        if let Err(e) = self.store.finish(&record.id, outcome, error, now) {
            tracing::error!(action = %record.id, "recording the final state: {e}");
        }
        let inverse = (outcome == Outcome::Succeeded)
            .then(|| crate::store::inverse_of(&record.request))
            .flatten();
        if let Some(inverse) = inverse
            && let Err(e) = self.store.record_undo(&record.id, &inverse, now)
        {
            tracing::error!(action = %record.id, "recording the undo: {e}");
        }
        tracing::debug!(action = %record.id, ?outcome, %result, "action finished");
        match outcome {
            Outcome::Succeeded => ActionState::Succeeded,
            Outcome::Failed => ActionState::Failed,
            Outcome::TimedOut => ActionState::TimedOut,
        }
    }
}

fn done(result: Value) -> Sent {
    Sent::Done {
        outcome: Outcome::Succeeded,
        result,
    }
}

/// `Succeeded` everywhere, or `Primed` (queued until an offline sensor connects), is success.
fn isolation_done(report: IsolationReport) -> Sent {
    let ok = !report.outcomes.is_empty()
        && report
            .outcomes
            .values()
            .all(|s| !matches!(s, client::IsolationStatus::Failed(_)));
    let result: BTreeMap<String, String> = report
        .outcomes
        .iter()
        .map(|(id, status)| (id.to_string(), format!("{status:?}")))
        .collect();
    Sent::Done {
        outcome: if ok {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        },
        result: json!({ "sensors": result }),
    }
}

fn outcome_of(progress: RemediationProgress) -> Option<Outcome> {
    match progress {
        RemediationProgress::Success => Some(Outcome::Succeeded),
        RemediationProgress::Failure => Some(Outcome::Failed),
        _ => None,
    }
}

fn remediation_json(report: &RemediationReport) -> Value {
    json!({
        "remediation_id": report.remediation_id,
        "status": format!("{:?}", report.status()),
        "entries": report.entries.iter().map(|e| json!({
            "machine": e.machine_guid,
            "target": e.target_guid,
            "status": format!("{:?}", e.status),
            "error": e.error.as_ref().map(|x| x.message.clone()),
        })).collect::<Vec<_>>(),
    })
}

/// Milliseconds since the Unix epoch, on this host's clock.
pub fn now_ms() -> i64 {
    crate::audit::now_ms()
}

/// The sensor ids of `machines`: those `known` first, then the others' from `sensors`.
fn pylum_ids_from(
    machines: &[MachineGuid],
    known: &PylumDirectory,
    sensors: &[client::Sensor],
) -> Result<Vec<PylumId>, client::Error> {
    let (found, missing): (Vec<_>, Vec<_>) =
        machines.iter().partition(|guid| known.contains_key(*guid));
    let mut ids: Vec<PylumId> = found.into_iter().map(|guid| known[guid].clone()).collect();
    for guid in missing {
        let sensor = sensors
            .iter()
            .find(|s| s.machine_guid.as_ref() == Some(guid))
            .ok_or_else(|| client::Error::NotFound {
                what: format!("a sensor for machine {guid}"),
            })?;
        ids.push(sensor.pylum_id.clone());
    }
    Ok(ids)
}
