//! Carries out ledgered actions on the server, exactly once, and follows them to a final
//! status.
//!
//! The ledger row exists (state `planned`) before anything is sent. A send whose outcome is
//! unknown (timeout, reset, 5xx after the request left) is never repeated blindly: the
//! action stays unresolved and [`Executor::reconcile`] looks for it on the server first.

use super::audit::Auditor;
use crate::fleet::Membership;
use crate::isolation::RecentIsolations;
use crate::notify;
use riposte_client::{
    self, Client, IsolationReport, RemediationEntry, RemediationReport, SensorStatus,
};
use riposte_domain::{
    ActionKind, ActionRequest, MachineGuid, PylumId, RemediationProgress, now_ms,
};
use riposte_notify::Notifier;
use riposte_policy::{BudgetLedger, Charge, TargetKey};
use riposte_store::prelude::*;
use riposte_store::{ActionRecord, ActionState, Outcome, RetryDecision, Store, Unsent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How remediations are followed and failures retried (from `[service.follow]`, see
/// [`crate::FollowConfig`]).
#[derive(Clone, Debug)]
pub struct FollowPolicy {
    /// Pause before the first progress poll; it doubles after each poll, up to
    /// `max_poll_interval`.
    pub poll_interval: Duration,
    /// The longest pause between two polls.
    pub max_poll_interval: Duration,
    /// Progress polls before a remediation is recorded as timed out (about 37 minutes with
    /// the default pauses).
    pub max_polls: u32,
    /// Sends of one action that certainly did not reach the server, before giving up.
    pub max_attempts: u32,
}

/// Sends of an action held back by no fault of its own (the server throttles it, HTTP 429,
/// or the host cannot log in), in multiples of [`FollowPolicy::max_attempts`], before giving
/// up: one send a cycle, so with the defaults (3 attempts, a 30 s poll) about 15 minutes.
/// Counted apart from other failed sends, which keep their own `max_attempts`.
const HELD_ATTEMPTS_FACTOR: u32 = 10;

impl Default for FollowPolicy {
    fn default() -> Self {
        Self::from(&crate::FollowConfig::default())
    }
}

impl From<&crate::FollowConfig> for FollowPolicy {
    fn from(c: &crate::FollowConfig) -> Self {
        Self {
            poll_interval: Duration::from_secs(c.first_poll_secs),
            max_poll_interval: Duration::from_secs(c.max_poll_interval_secs),
            max_polls: c.max_polls,
            max_attempts: 3,
        }
    }
}

impl FollowPolicy {
    /// The pause before progress poll number `poll` (1-based): `poll_interval` doubled
    /// `poll - 1` times, at most `max_poll_interval`.
    pub fn delay(&self, poll: u32) -> Duration {
        let doubled = self
            .poll_interval
            .saturating_mul(1u32 << poll.saturating_sub(1).min(20));
        doubled.min(self.max_poll_interval.max(self.poll_interval))
    }
}

/// Machine guid → sensor id, from the Malop being handled; the rest is looked up.
pub(crate) type PylumDirectory = BTreeMap<MachineGuid, PylumId>;

/// The sensor ids a detailed Malop carries for its machines.
pub(crate) fn pylum_directory(malop: &riposte_domain::Malop) -> PylumDirectory {
    malop
        .machines
        .iter()
        .filter_map(|m| m.pylum_id.clone().map(|p| (m.guid.clone(), p)))
        .collect()
}

/// Sends actions and records their fate in the store and the audit trail.
#[derive(Clone)]
pub(crate) struct Executor {
    client: Arc<Client>,
    store: Arc<Store>,
    auditor: Arc<Auditor>,
    follow: FollowPolicy,
    /// Asked just before anything is sent: a host that lost the poller lease sends nothing.
    membership: Arc<Membership>,
    /// Where failed actions are notified (never waits).
    notifier: Notifier,
    /// The isolation changes the server confirmed, shown to the plugins evaluated next.
    isolations: Arc<RecentIsolations>,
}

/// Where an action stands after its one send.
pub enum Submitted {
    /// Final (isolation, reputation, status, comment; or a send that failed), or an
    /// isolation change the server queued for offline sensors (`following`: later cycles
    /// check it, see [`Executor::reconcile`]).
    Final(ActionState),
    /// A remediation the server is working on: follow it.
    Following(RemediationReport),
}

/// What one send achieved.
enum Sent {
    /// Final at once (isolation, reputation, status, comment). `rejected`: the budget units
    /// of targets the server rejected as unknown.
    Done {
        outcome: Outcome,
        result: Value,
        rejected: Vec<Charge>,
    },
    /// A remediation the server is working on.
    Remediation(RemediationReport),
    /// An isolation change no sensor refused, queued by the server for the offline ones
    /// (`Primed`) until they connect.
    Queued {
        result: Value,
        queued: QueuedSensors,
    },
}

/// Whether an action in `state` asking `request` is an isolation change the server queued
/// for offline sensors (see [`Executor::check_queued`]).
pub(crate) fn is_queued_isolation(state: ActionState, request: &ActionRequest) -> bool {
    state == ActionState::Following
        && matches!(
            request,
            ActionRequest::Isolate { .. } | ActionRequest::Unisolate { .. }
        )
}

/// The sensors an isolation change waits for, queued by the server until they connect:
/// kept as the action's progress detail, so the ledger alone says what to check (after a
/// restart too).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueuedSensors {
    /// pylumId → the machine it is on.
    queued: BTreeMap<PylumId, MachineGuid>,
}

impl QueuedSensors {
    fn of(record: &ActionRecord) -> Option<Self> {
        serde_json::from_value(record.progress_detail.clone()?).ok()
    }

    fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What the sensors of a queued isolation change show.
#[derive(Debug, Default, PartialEq, Eq)]
struct QueueCheck {
    /// Still waiting for the change.
    waiting: QueuedSensors,
    /// The machines whose sensor now shows the change.
    applied: Vec<MachineGuid>,
    /// Archived sensors: the change will never run there.
    archived: Vec<PylumId>,
}

impl QueueCheck {
    /// Compares `queued` with what `sensors/query` answered (`want_isolated`: the change).
    fn of(queued: &QueuedSensors, sensors: &[riposte_client::Sensor], want_isolated: bool) -> Self {
        let mut check = Self::default();
        for (id, machine) in &queued.queued {
            // An archived sensor and its machine's new one can share a pylumId.
            let same: Vec<&riposte_client::Sensor> =
                sensors.iter().filter(|s| &s.pylum_id == id).collect();
            let applied = same.iter().any(|s| s.isolated == want_isolated);
            let archived =
                !same.is_empty() && same.iter().all(|s| s.status == SensorStatus::Archived);
            if applied {
                check.applied.push(machine.clone());
            } else if archived {
                check.archived.push(id.clone());
            } else {
                check.waiting.queued.insert(id.clone(), machine.clone());
            }
        }
        check
    }
}

/// Which budget units of an action to give back.
enum Refund {
    /// All of them: the action certainly never reached the server, or had no effect.
    All,
    /// Those of targets the server rejected as unknown.
    Only(Vec<Charge>),
}

impl Executor {
    /// An executor over `client`, recording into `store` and `auditor`.
    pub fn new(
        client: Arc<Client>,
        store: Arc<Store>,
        auditor: Arc<Auditor>,
        follow: FollowPolicy,
        membership: Arc<Membership>,
        notifier: Notifier,
    ) -> Self {
        Self {
            client,
            store,
            auditor,
            follow,
            membership,
            notifier,
            isolations: Arc::default(),
        }
    }

    /// The isolation changes the server confirmed to this executor lately.
    pub(crate) fn isolations(&self) -> &RecentIsolations {
        &self.isolations
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
        self.submit_tracked(record, pylums, &AtomicBool::new(false))
            .await
    }

    /// [`Executor::submit`], setting `sending` just before the request that changes something
    /// is handed to the client: until then, the action certainly has not left the host.
    pub(crate) async fn submit_tracked(
        &self,
        record: &ActionRecord,
        pylums: &PylumDirectory,
        sending: &AtomicBool,
    ) -> Submitted {
        let started = Instant::now();
        let now = now_ms();
        // The decision that allowed the action is on disk before the server hears of it;
        // if the audit trail cannot be forced to disk, nothing is sent.
        if let Err(e) = self.auditor.barrier() {
            let error = format!("not sent: the audit trail could not be forced to disk: {e}");
            let state = self
                .book(record, move |ex, r| ex.give_up_or_retry(r, &error))
                .await;
            self.auditor.action_result(record, state, started.elapsed());
            return Submitted::Final(state);
        }
        // Another host may have taken the poller lease over (this one stalled, or lost the
        // database): the action stays planned, and the acting host settles it (looking for
        // it on the server first).
        if !self.membership.may_act() {
            tracing::warn!(action = %record.id, "not sent: this host no longer holds the poller lease");
            return Submitted::Final(ActionState::Planned);
        }
        let state = match self.send(&record.request, pylums, sending).await {
            Ok(Sent::Done {
                outcome,
                result,
                rejected,
            }) => {
                self.book(record, move |ex, r| {
                    ex.mark_submitted(r, None, &result, now);
                    let state = ex.finish(r, outcome, &result, None);
                    ex.refund(
                        r,
                        Refund::Only(rejected),
                        "the server rejected these targets as unknown",
                    );
                    state
                })
                .await
            }
            Ok(Sent::Queued { result, queued }) => {
                // Audited once it is settled, like a remediation followed.
                return Submitted::Final(
                    self.book(record, move |ex, r| {
                        ex.mark_queued(r, &result, &queued, now)
                    })
                    .await,
                );
            }
            Ok(Sent::Remediation(report)) => {
                let result = remediation_json(&report);
                let sent = report.clone();
                self.book(record, move |ex, r| {
                    ex.mark_submitted(r, Some(&sent), &result, now)
                })
                .await;
                return Submitted::Following(report);
            }
            Err(error) => {
                self.book(record, move |ex, r| ex.send_failed(r, &error))
                    .await
            }
        };
        self.auditor.action_result(record, state, started.elapsed());
        Submitted::Final(state)
    }

    /// Follows a submitted remediation to SUCCESS, FAILURE or the follow limit, records and
    /// audits its final state.
    pub async fn follow(&self, record: &ActionRecord, report: RemediationReport) -> ActionState {
        let started = Instant::now();
        let state = self.follow_remediation(record, report).await;
        self.auditor.action_result(record, state, started.elapsed());
        state
    }

    /// Settles an action a crash left `planned`, `submitted` or `following`: looks for it on
    /// the server before anything is sent again.
    pub(crate) async fn reconcile(
        &self,
        record: &ActionRecord,
        pylums: &PylumDirectory,
    ) -> ActionState {
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
            (state, request) if is_queued_isolation(*state, request) => {
                let states = self.check_queued(std::slice::from_ref(record)).await;
                states.first().copied().unwrap_or(record.state)
            }
            // Anything else is looked for on the server first: only what is not there yet is
            // sent, so a crash between the send and its record never sends it twice.
            (ActionState::Planned | ActionState::Submitted | ActionState::Following, request) => {
                match self.already_applied(request, pylums).await {
                    Ok(true) => {
                        tracing::info!(action = %record.id, "already applied on the server; not sending again");
                        let result = json!({"found_on_server": true});
                        self.book(record, move |ex, r| {
                            ex.mark_submitted(r, None, &result, now_ms());
                            ex.finish(r, Outcome::Succeeded, &result, None)
                        })
                        .await
                    }
                    Ok(false) => self.execute(record, pylums).await,
                    Err(error) => {
                        self.book(record, move |ex, r| {
                            ex.retry_unless_spent(r, "checking the server before resending", &error)
                        })
                        .await
                    }
                }
            }
            (state, _) => *state,
        }
    }

    async fn find_and_follow(&self, record: &ActionRecord, pylums: &PylumDirectory) -> ActionState {
        let ActionRequest::Remediate { malop_id, targets } = &record.request else {
            return record.state;
        };
        let Some(malop) = malop_id else {
            // The server lists remediations only per Malop: one sent without a Malop id
            // cannot be looked for, so it is never sent again blindly.
            let error = "outcome unknown: a remediation sent without a Malop id cannot be looked up on the server, so it is not sent again; check the console before asking for it again";
            tracing::warn!(action = %record.id, "{error}");
            return self
                .book(record, move |ex, r| {
                    ex.finish(r, Outcome::TimedOut, &json!({}), Some(error))
                })
                .await;
        };
        match self.client.find_remediation(malop, targets).await {
            Ok(Some(report)) => {
                tracing::info!(action = %record.id, "found on the server after a restart; not sending again");
                let result = remediation_json(&report);
                let found = report.clone();
                self.book(record, move |ex, r| {
                    ex.mark_submitted(r, Some(&found), &result, now_ms())
                })
                .await;
                self.follow(record, report).await
            }
            Ok(None) => self.execute(record, pylums).await,
            Err(error) => {
                self.book(record, move |ex, r| {
                    ex.retry_unless_spent(r, "looking for the action on the server", &error)
                })
                .await
            }
        }
    }

    /// Whether the server already shows the effect of `request` (isolation state, the
    /// reputation list, the Malop's status and comments).
    async fn already_applied(
        &self,
        request: &ActionRequest,
        pylums: &PylumDirectory,
    ) -> Result<bool, riposte_client::Error> {
        let c = &self.client;
        Ok(match request {
            ActionRequest::Remediate { .. } => false,
            ActionRequest::Isolate { machines, .. } | ActionRequest::Unisolate { machines, .. } => {
                let want_isolated = matches!(request, ActionRequest::Isolate { .. });
                let sensors = c.sensors(json!([])).await?;
                let ids = pylum_ids_from(machines, pylums, &sensors)?;
                ids.iter().all(|(_, id)| {
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

    /// Sends `request`, setting `sending` just before the request that changes something
    /// leaves for the server (lookups it needs first, such as sensor ids, come before).
    async fn send(
        &self,
        request: &ActionRequest,
        pylums: &PylumDirectory,
        sending: &AtomicBool,
    ) -> Result<Sent, riposte_client::Error> {
        let c = &self.client;
        let leaving = || sending.store(true, Ordering::Release);
        Ok(match request {
            ActionRequest::Remediate { malop_id, targets } => {
                leaving();
                Sent::Remediation(c.remediate(malop_id.as_ref(), targets).await?)
            }
            ActionRequest::Isolate { malop_id, machines }
            | ActionRequest::Unisolate { malop_id, machines } => {
                let sensors = self.pylum_ids(machines, pylums).await?;
                let ids: Vec<PylumId> = sensors.iter().map(|(_, id)| id.clone()).collect();
                leaving();
                let report = if matches!(request, ActionRequest::Isolate { .. }) {
                    let report = c.isolate(&ids, malop_id.as_ref()).await?;
                    // Only what the server confirmed, machine by machine, is shown to the
                    // plugins of Malops read before.
                    self.isolations.note(
                        &confirmed_machines(&sensors, &report),
                        true,
                        Instant::now(),
                    );
                    report
                } else {
                    // Shown as not isolated from the moment it leaves, whatever comes back:
                    // the safe direction (at worst a machine is asked to isolate again).
                    self.isolations.note(machines, false, Instant::now());
                    c.unisolate(&ids, malop_id.as_ref()).await?
                };
                isolation_done(report, &sensors, request.action_kinds()[0])
            }
            ActionRequest::SetReputation {
                keys,
                verdict,
                prevent,
            } => {
                leaving();
                c.set_reputation(keys, *verdict, *prevent).await?;
                done(json!({"outcome": "success"}))
            }
            ActionRequest::RemoveReputation { keys } => {
                leaving();
                c.remove_reputation(keys).await?;
                done(json!({"outcome": "success"}))
            }
            ActionRequest::SetStatus { malop_id, status } => {
                leaving();
                c.set_malop_status(malop_id, *status).await?;
                done(json!({"status": "SUCCESS"}))
            }
            ActionRequest::AddComment { malop_id, text } => {
                leaving();
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
    ) -> Result<Vec<(MachineGuid, PylumId)>, riposte_client::Error> {
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
        // The server's own Malop id first; a remediation sent without one is followed too.
        let malop = report.malop_id.clone().or_else(|| record.malop_id.clone());
        for poll in 0..=self.follow.max_polls {
            let progress = report.status();
            let polled = report.clone();
            let outcome = outcome_of(progress);
            // The poll and, once final, the final state, the undo and the refund: one trip
            // to the blocking pool.
            let state = self
                .book(record, move |ex, r| {
                    ex.record_progress(r, progress, &polled);
                    let outcome = outcome?;
                    let error = polled
                        .failure()
                        .and_then(|e| e.error.as_ref())
                        .map(|e| e.message.clone());
                    let state = ex.finish(r, outcome, &remediation_json(&polled), error.as_deref());
                    ex.refund(
                        r,
                        Refund::Only(rejected_items(&r.request, &polled.entries)),
                        "the server rejected these targets as unknown",
                    );
                    Some(state)
                })
                .await;
            if let Some(state) = state {
                return state;
            }
            if poll == self.follow.max_polls {
                break;
            }
            let delay = self.follow.delay(poll + 1);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            report = match self
                .client
                .remediation_progress(malop.as_ref(), &report.remediation_id)
                .await
            {
                Ok(next) => next,
                Err(error) => {
                    tracing::warn!(action = %record.id, "remediation progress: {error}");
                    report
                }
            };
        }
        self.book(record, move |ex, r| {
            ex.finish(
                r,
                Outcome::TimedOut,
                &remediation_json(&report),
                Some("no final status before the follow limit"),
            )
        })
        .await
    }

    /// Checks the isolation changes the server queued for offline sensors (`following`
    /// isolations) whose next check is due (the pauses of remediation progress polls), with
    /// one `sensors/query` for all of them: applied on every sensor, a change succeeded; an
    /// archived sensor will never run it; after `max_polls` checks it timed out (the server
    /// may still apply it when the sensor connects). Returns the state of each, in order.
    pub(crate) async fn check_queued(&self, records: &[ActionRecord]) -> Vec<ActionState> {
        let now = now_ms();
        let due: Vec<(&ActionRecord, Option<QueuedSensors>)> = records
            .iter()
            .filter(|r| {
                let pause = self.follow.delay(r.polls).as_millis() as i64;
                now >= r.updated_at_ms.saturating_add(pause)
            })
            .map(|r| (r, QueuedSensors::of(r)))
            .collect();
        let mut ids: Vec<PylumId> = due
            .iter()
            .flat_map(|(_, q)| q.iter().flat_map(|q| q.queued.keys().cloned()))
            .collect();
        ids.sort();
        ids.dedup();
        let sensors = match self.client.sensors_by_pylum_id(&ids).await {
            Ok(sensors) => Some(sensors),
            Err(error) => {
                tracing::warn!(
                    actions = due.len(),
                    "checking the sensors of queued isolation changes: {error}"
                );
                None
            }
        };
        let mut settled = BTreeMap::new();
        for (record, queued) in due {
            let state = self.settle_queued(record, queued, sensors.as_deref()).await;
            settled.insert(record.id.as_str(), state);
        }
        records
            .iter()
            .map(|r| settled.get(r.id.as_str()).copied().unwrap_or(r.state))
            .collect()
    }

    /// Where one queued isolation change stands after a check (`sensors`: the answer, if
    /// one came).
    async fn settle_queued(
        &self,
        record: &ActionRecord,
        queued: Option<QueuedSensors>,
        sensors: Option<&[riposte_client::Sensor]>,
    ) -> ActionState {
        let Some(queued) = queued else {
            let error = "the sensors this isolation change waits for are not readable in the ledger; check the machines on the console";
            return self.settle(record, Outcome::TimedOut, Some(error)).await;
        };
        let want_isolated = matches!(record.request, ActionRequest::Isolate { .. });
        // Without an answer nothing is known: the check does not count, and the next cycle
        // asks again.
        let Some(sensors) = sensors else {
            return record.state;
        };
        let check = QueueCheck::of(&queued, sensors, want_isolated);
        if want_isolated {
            self.isolations.note(&check.applied, true, Instant::now());
        }
        if !check.archived.is_empty() {
            let ids: Vec<&str> = check.archived.iter().map(PylumId::as_str).collect();
            let error = format!(
                "the sensors {} were archived: the queued isolation change will never run there",
                ids.join(", ")
            );
            self.settle(record, Outcome::Failed, Some(&error)).await
        } else if check.waiting.queued.is_empty() {
            self.settle(record, Outcome::Succeeded, None).await
        } else if record.polls >= self.follow.max_polls {
            let error = "the sensors did not connect before the follow limit; the server keeps the change queued and applies it when they connect";
            self.settle(record, Outcome::TimedOut, Some(error)).await
        } else {
            self.book(record, move |ex, r| ex.record_queued(r, &check.waiting))
                .await
        }
    }

    /// Records the final `outcome` of a queued isolation change and audits it. An undo
    /// that took effect marks its action undone; an isolation that did not may still, as
    /// the server keeps it queued, so its inverse is recorded for `riposte undo`.
    async fn settle(
        &self,
        record: &ActionRecord,
        outcome: Outcome,
        error: Option<&str>,
    ) -> ActionState {
        let error = error.map(str::to_owned);
        let detail = record.progress_detail.clone().unwrap_or_default();
        let state = self
            .book(record, move |ex, r| {
                let state = ex.finish(r, outcome, &detail, error.as_deref());
                ex.after_queued(r, outcome);
                state
            })
            .await;
        self.auditor
            .action_result(record, state, Duration::from_millis(0));
        state
    }

    async fn resume_following(&self, record: &ActionRecord) -> ActionState {
        let Some(rid) = &record.remediation_id else {
            return record.state;
        };
        match self
            .client
            .remediation_progress(progress_malop(record), rid)
            .await
        {
            Ok(report) => self.follow(record, report).await,
            Err(error) => {
                self.book(record, move |ex, r| {
                    ex.retry_unless_spent(r, "reading remediation progress", &error)
                })
                .await
            }
        }
    }

    /// Runs the blocking bookkeeping `work` of `record` (store transactions, refunds, audit
    /// records; the synchronous helpers below) on tokio's blocking pool, and waits for it.
    /// A panic in `work` is resumed here, as if it had run inline.
    async fn book<T: Send + 'static>(
        &self,
        record: &ActionRecord,
        work: impl FnOnce(&Executor, &ActionRecord) -> T + Send + 'static,
    ) -> T {
        let (executor, record) = (self.clone(), record.clone());
        match tokio::task::spawn_blocking(move || work(&executor, &record)).await {
            Ok(value) => value,
            Err(join) => match join.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(join) => panic!("the bookkeeping of an action was cancelled: {join}"),
            },
        }
    }

    fn send_failed(&self, record: &ActionRecord, error: &riposte_client::Error) -> ActionState {
        if error.certainly_not_done() && !error.rejected_for_good() {
            return self.retry_unless_spent(record, "not sent", error);
        }
        if let riposte_client::Error::OutcomeUnknown { .. } = error {
            // Left unresolved on purpose: reconcile() checks the server before any resend.
            tracing::warn!(action = %record.id, "outcome unknown, will check the server before resending: {error}");
            let _ = self.store.mark_submitted(
                &record.id,
                None,
                &json!({ riposte_store::OUTCOME_UNKNOWN: error.to_string() }),
                now_ms(),
            );
            return ActionState::Submitted;
        }
        let state = self.finish(
            record,
            Outcome::Failed,
            &json!({"error": error.to_string()}),
            Some(&error.to_string()),
        );
        match error {
            // Nothing happened, and nothing would on a retry.
            e if e.rejected_for_good() => {
                self.refund(
                    record,
                    Refund::All,
                    "the action had no effect on the server",
                );
            }
            riposte_client::Error::RemediationFailed { failed, .. } => self.refund(
                record,
                Refund::Only(rejected_items(&record.request, failed)),
                "the server rejected these targets as unknown",
            ),
            _ => {}
        }
        state
    }

    /// Counts a try of `record` that `error` (from `what`) kept from the server, and gives up
    /// once its tries are spent. An error that held it back by no fault of its own (a
    /// throttling server, no login) is counted apart, with more patience (ten times the
    /// tries: about 15 minutes with the defaults): a server throttles for minutes at a time
    /// (the API notes' clients wait 60 s), and a refused login takes an operator to mend.
    fn retry_unless_spent(
        &self,
        record: &ActionRecord,
        what: &str,
        error: &riposte_client::Error,
    ) -> ActionState {
        let text = format!("{what}: {error}");
        if error.held_back() {
            let patience = self
                .follow
                .max_attempts
                .saturating_mul(HELD_ATTEMPTS_FACTOR);
            self.give_up_or_retry_within(record, &text, Unsent::Held, patience)
        } else {
            self.give_up_or_retry(record, &text)
        }
    }

    fn give_up_or_retry(&self, record: &ActionRecord, error: &str) -> ActionState {
        self.give_up_or_retry_within(record, error, Unsent::Failed, self.follow.max_attempts)
    }

    fn give_up_or_retry_within(
        &self,
        record: &ActionRecord,
        error: &str,
        why: Unsent,
        max_attempts: u32,
    ) -> ActionState {
        match self
            .store
            .record_failed_attempt(&record.id, error, why, max_attempts, now_ms())
        {
            Ok(RetryDecision::Retry { attempts }) => {
                tracing::warn!(action = %record.id, attempts, "not sent ({error}); will retry");
                record.state
            }
            Ok(RetryDecision::GaveUp { .. }) => {
                self.refund(record, Refund::All, "the action never reached the server");
                notify::action_failed(&self.notifier, record, error);
                ActionState::Failed
            }
            Err(e) => {
                tracing::error!(action = %record.id, "recording a failed attempt: {e}");
                record.state
            }
        }
    }

    /// Records as failed an action that certainly was not sent (its invocation ended before
    /// it was handed to the client), gives its budget back and audits it: it must not linger
    /// `planned` for recovery to send later.
    ///
    /// It is called where nothing can be awaited (a `Drop`): the worker steps aside for it
    /// ([`crate::db::in_place`]).
    pub(crate) fn abandon(&self, record: &ActionRecord, why: &str) {
        crate::db::in_place(|| self.abandon_now(record, why));
    }

    fn abandon_now(&self, record: &ActionRecord, why: &str) {
        match self
            .store
            .finish(&record.id, Outcome::Failed, Some(why), now_ms())
        {
            Ok(()) => {
                self.refund(record, Refund::All, why);
                notify::action_failed(&self.notifier, record, why);
                self.auditor
                    .action_result(record, ActionState::Failed, Duration::ZERO);
            }
            Err(e) => {
                tracing::error!(action = %record.id, "recording an unsent action failed: {e}")
            }
        }
    }

    /// Gives back the budget units of `record` that `which` names, and audits what was given
    /// back and why.
    fn refund(&self, record: &ActionRecord, which: Refund, why: &str) {
        let charges = match which {
            Refund::All => riposte_policy::check_arguments(&record.request).unwrap_or_default(),
            Refund::Only(charges) => charges,
        };
        if charges.is_empty() {
            return;
        }
        match BudgetLedger::refund(&*self.store, &record.plugin, &charges, record.created_at_ms) {
            Ok(0) => {}
            Ok(units) => self.auditor.budget_refunded(record, &charges, units, why),
            Err(e) => tracing::error!(action = %record.id, "giving the budget back: {e}"),
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

    /// Records that the server took an isolation change it will apply when the `queued`
    /// sensors connect: `following` at once, in one step, so that the change is never sent
    /// again.
    fn mark_queued(
        &self,
        record: &ActionRecord,
        result: &Value,
        queued: &QueuedSensors,
        now: i64,
    ) -> ActionState {
        match self
            .store
            .mark_queued(&record.id, result, &queued.to_json(), now)
        {
            Ok(()) => ActionState::Following,
            Err(e) => {
                tracing::error!(action = %record.id, "recording a queued isolation change: {e}");
                record.state
            }
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

    /// What a queued isolation change's final `outcome` means beyond its own row (see
    /// [`Executor::settle`]).
    fn after_queued(&self, record: &ActionRecord, outcome: Outcome) {
        let now = now_ms();
        if outcome == Outcome::Succeeded {
            if let Some(original) = &record.undo_of {
                let by = riposte_store::undo_requester(record).unwrap_or("riposte");
                if let Err(e) = self.store.mark_undone(original, &record.id, by, now) {
                    tracing::error!(action = %record.id, "marking {original} undone: {e}");
                }
            }
        } else if matches!(record.request, ActionRequest::Isolate { .. })
            && let Some(inverse) = riposte_store::inverse_of(&record.request)
            && let Err(e) = self.store.record_undo(&record.id, &inverse, now)
        {
            tracing::error!(action = %record.id, "recording the undo: {e}");
        }
    }

    /// Records that the isolation change waits for `queued` sensors to connect (state
    /// `following`, one more check counted).
    fn record_queued(&self, record: &ActionRecord, queued: &QueuedSensors) -> ActionState {
        match self.store.record_progress(
            &record.id,
            RemediationProgress::Pending,
            &queued.to_json(),
            now_ms(),
        ) {
            Ok(()) => ActionState::Following,
            Err(e) => {
                tracing::error!(action = %record.id, "recording a check of a queued isolation change: {e}");
                record.state
            }
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
            .then(|| riposte_store::inverse_of(&record.request))
            .flatten();
        if let Some(inverse) = inverse
            && let Err(e) = self.store.record_undo(&record.id, &inverse, now)
        {
            tracing::error!(action = %record.id, "recording the undo: {e}");
        }
        tracing::debug!(action = %record.id, ?outcome, %result, "action finished");
        notify::if_failed(&self.notifier, record, outcome, error);
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
        rejected: Vec::new(),
    }
}

/// The machines of `sensors` whose isolation command the server reports applied (a machine
/// missing from the answer, or refused, is not).
fn confirmed_machines(
    sensors: &[(MachineGuid, PylumId)],
    report: &IsolationReport,
) -> Vec<MachineGuid> {
    sensors
        .iter()
        .filter(|(_, id)| report.outcomes.get(id).is_some_and(|s| s.is_applied()))
        .map(|(machine, _)| machine.clone())
        .collect()
}

/// `Succeeded` on every sensor sent to is success; `Primed` on some (queued until those
/// offline sensors connect) and no refusal is followed until they show it; anything else,
/// or a sensor the answer left out, is a failure. A sensor the server answers `UnknownProbe`
/// for was rejected as unknown: its machine's budget unit is given back.
fn isolation_done(
    report: IsolationReport,
    sensors: &[(MachineGuid, PylumId)],
    kind: ActionKind,
) -> Sent {
    let rejected = sensors
        .iter()
        .filter(|(_, id)| {
            matches!(report.outcomes.get(id), Some(riposte_client::IsolationStatus::Failed(s)) if s == "UnknownProbe")
        })
        .map(|(machine, _)| Charge {
            kind,
            target: TargetKey::Machine(machine.clone()),
        })
        .collect();
    let outcomes: BTreeMap<String, String> = report
        .outcomes
        .iter()
        .map(|(id, status)| (id.to_string(), format!("{status:?}")))
        .collect();
    let result = json!({ "sensors": outcomes });
    if !report.all_applied() && report.none_refused() {
        let queued = report.queued().collect::<Vec<_>>();
        let queued = sensors
            .iter()
            .filter(|(_, id)| queued.contains(&id))
            .map(|(machine, id)| (id.clone(), machine.clone()))
            .collect();
        return Sent::Queued {
            result,
            queued: QueuedSensors { queued },
        };
    }
    Sent::Done {
        outcome: if report.all_applied() {
            Outcome::Succeeded
        } else {
            Outcome::Failed
        },
        result,
        rejected,
    }
}

/// The budget units of a remediation whose every item on a machine (per kind) the server
/// rejected as unknown.
fn rejected_items(request: &ActionRequest, entries: &[RemediationEntry]) -> Vec<Charge> {
    let ActionRequest::Remediate { targets, .. } = request else {
        return Vec::new();
    };
    let rejected = |t: &riposte_domain::RemediationTarget| {
        entries.iter().any(|e| {
            e.rejected_as_unknown()
                && e.machine_guid == t.machine_guid
                && e.target_guid == t.target_guid
        })
    };
    let mut units: BTreeMap<(ActionKind, MachineGuid), bool> = BTreeMap::new();
    for t in targets {
        let all = units
            .entry((t.kind.into(), t.machine_guid.clone()))
            .or_insert(true);
        *all &= rejected(t);
    }
    units
        .into_iter()
        .filter(|(_, all)| *all)
        .map(|((kind, machine), _)| Charge {
            kind,
            target: TargetKey::Machine(machine),
        })
        .collect()
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

/// The Malop id a remediation's progress is asked for with (none for one sent without).
pub(crate) fn progress_malop(record: &ActionRecord) -> Option<&riposte_domain::MalopId> {
    record.malop_id.as_ref()
}

/// The sensor id of each of `machines`, in order: from `known`, else from `sensors`.
fn pylum_ids_from(
    machines: &[MachineGuid],
    known: &PylumDirectory,
    sensors: &[riposte_client::Sensor],
) -> Result<Vec<(MachineGuid, PylumId)>, riposte_client::Error> {
    machines
        .iter()
        .map(|guid| {
            let id = known.get(guid).cloned().or_else(|| {
                sensors
                    .iter()
                    .find(|s| s.machine_guid.as_ref() == Some(guid))
                    .map(|s| s.pylum_id.clone())
            });
            id.map(|id| (guid.clone(), id))
                .ok_or_else(|| riposte_client::Error::NotFound {
                    what: format!("a sensor for machine {guid}"),
                })
        })
        .collect()
}

#[cfg(test)]
mod confirmed_tests {
    use super::*;
    use riposte_client::IsolationStatus;

    #[test]
    fn only_machines_the_server_reports_isolated_are_confirmed() {
        let pair = |m: &str| (MachineGuid::new(m), PylumId::new(format!("P-{m}")));
        let sensors = [pair("a"), pair("b"), pair("c")];
        let report = IsolationReport {
            outcomes: [
                (PylumId::new("P-a"), IsolationStatus::Succeeded),
                (
                    PylumId::new("P-b"),
                    IsolationStatus::Failed("Disconnected".into()),
                ),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(
            confirmed_machines(&sensors, &report),
            [MachineGuid::new("a")],
            "b was refused and c is missing from the answer"
        );
    }

    fn report(outcomes: &[(&str, IsolationStatus)]) -> IsolationReport {
        IsolationReport {
            outcomes: outcomes
                .iter()
                .map(|(id, s)| (PylumId::new(*id), s.clone()))
                .collect(),
        }
    }

    fn sensor(id: &str, status: SensorStatus, isolated: bool) -> riposte_client::Sensor {
        riposte_client::Sensor {
            pylum_id: PylumId::new(id),
            machine_guid: None,
            machine_name: id.into(),
            status,
            isolated,
            os_type: String::new(),
            internal_ip: None,
            group_name: None,
        }
    }

    #[test]
    fn a_primed_isolation_is_followed_not_counted_as_applied() {
        let pair = |m: &str| (MachineGuid::new(m), PylumId::new(format!("P-{m}")));
        let sensors = [pair("a"), pair("b")];
        let primed = report(&[
            ("P-a", IsolationStatus::Succeeded),
            ("P-b", IsolationStatus::Primed),
        ]);
        match isolation_done(primed, &sensors, ActionKind::Isolate) {
            Sent::Queued { queued, result } => {
                assert_eq!(
                    queued.queued,
                    [(PylumId::new("P-b"), MachineGuid::new("b"))].into()
                );
                assert_eq!(result["sensors"]["P-b"], "Primed");
            }
            _ => panic!("a Primed sensor is waited for"),
        }
        let refused = report(&[
            ("P-a", IsolationStatus::Failed("Disconnected".into())),
            ("P-b", IsolationStatus::Primed),
        ]);
        assert!(matches!(
            isolation_done(refused, &sensors, ActionKind::Isolate),
            Sent::Done {
                outcome: Outcome::Failed,
                ..
            }
        ));
        let applied = report(&[
            ("P-a", IsolationStatus::Succeeded),
            ("P-b", IsolationStatus::Succeeded),
        ]);
        assert!(matches!(
            isolation_done(applied, &sensors, ActionKind::Isolate),
            Sent::Done {
                outcome: Outcome::Succeeded,
                ..
            }
        ));
    }

    #[test]
    fn a_queued_change_is_applied_when_the_sensor_shows_it() {
        let queued = QueuedSensors {
            queued: ["a", "b", "c", "d"]
                .map(|m| (PylumId::new(format!("P-{m}")), MachineGuid::new(m)))
                .into(),
        };
        let answer = [
            sensor("P-a", SensorStatus::Online, true),
            sensor("P-b", SensorStatus::Offline, false),
            sensor("P-c", SensorStatus::Archived, false),
            sensor("P-x", SensorStatus::Online, true),
        ];
        let check = QueueCheck::of(&queued, &answer, true);
        assert_eq!(check.applied, [MachineGuid::new("a")]);
        assert_eq!(check.archived, [PylumId::new("P-c")]);
        let waiting: Vec<&str> = check.waiting.queued.keys().map(PylumId::as_str).collect();
        assert_eq!(
            waiting,
            ["P-b", "P-d"],
            "offline, and missing from the answer"
        );
        let released = QueueCheck::of(&queued, &answer, false);
        assert!(
            released.applied.contains(&MachineGuid::new("b")),
            "an un-isolation shows as not isolated"
        );
        let stored: QueuedSensors = serde_json::from_value(queued.to_json()).unwrap();
        assert_eq!(stored, queued, "the ledger's detail reads back");
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::FollowPolicy;
    use std::time::Duration;

    #[test]
    fn progress_polls_back_off_up_to_the_longest_pause() {
        let p = FollowPolicy::default();
        let secs: Vec<u64> = (1..=6).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60]);
        let total: Duration = (1..=p.max_polls).map(|n| p.delay(n)).sum();
        assert!(total >= Duration::from_secs(30 * 60), "{total:?}");
        let fast = FollowPolicy {
            poll_interval: Duration::ZERO,
            ..FollowPolicy::default()
        };
        assert_eq!(fast.delay(3), Duration::ZERO);
    }
}
