//! The store's contract: one trait per concern, each implemented by the SQLite [`Store`]
//! and meant to be implemented by a second backend (PostgreSQL) chosen at runtime.
//!
//! Every trait is object-safe (no generic methods; callbacks are `&dyn Fn`/`&mut dyn FnMut`),
//! so a caller can hold `Arc<dyn ActionLedger + Send + Sync>` or, for everything at once,
//! `Arc<dyn Repositories>`. Generic conveniences live in extension traits implemented for
//! every implementor ([`BudgetsExt`]).
//!
//! What every implementation must guarantee, beyond what each method says:
//!
//! - **One transaction per call.** A method either commits everything it changes or nothing
//!   (an error leaves the database as it was), and its reads see one consistent snapshot.
//!   The exceptions are named: [`Approvals::approve`] and [`Approvals::deny`] record an
//!   expiry they discover *and* refuse.
//! - **Durable at return.** A write is on disk (survives a power cut) when the method returns
//!   `Ok`, except where a method says otherwise ([`ActionLedger::begin_action`] of a shadowed
//!   action may wait for the next durable commit, in commit order).
//! - **Safe under concurrency across processes and hosts.** Every state change is guarded
//!   by the state it expects (`UPDATE ... WHERE state IN (...)` with its row count checked),
//!   so two callers racing for the same row see one succeed and the other refused; checks
//!   and the writes that depend on them (budgets, approvals, claims) are serialised.
//! - **The caller's clock.** Every timestamp is milliseconds since the Unix epoch passed in
//!   (`now_ms`); an implementation never reads a clock for a decision.
//! - **Errors name the database and the operation** ([`Error`]), and refusals are the
//!   matchable [`crate::Refusal`]s the SQLite store returns, so callers behave the same on
//!   every backend.
//!
//! The methods block until the database answers: async callers run them on a blocking
//! thread (`tokio::task::spawn_blocking`), never on an async worker.
//!
//! [`Store`]: crate::Store

use crate::{
    ActionFilter, ActionId, ActionKey, ActionRecord, ApprovedAction, Backoff, BeginOutcome,
    BudgetCharge, ChargeItem, Error, Handled, HostStatus, IncompleteMalop, IncompleteSummary,
    LeaseGrant, LeaseStatus, NewAction, Outcome, PauseState, PausedPlugin, PendingApproval,
    PluginActivity, Result, RetryDecision, SessionRecord, SpendOutcome, StatusSnapshot, TimeBox,
    UndoRecord, Unsent, UserRecord, Vote,
};
use riposte_domain::{
    ActionKind, ActionRequest, Malop, MalopId, MalopPart, PluginName, RemediationId,
    RemediationProgress, Role, Sha256Digest, TimestampMs, UserName,
};

/// The action ledger (G4, exactly once): every action recorded under its idempotency key
/// before anything is sent, and moved through the state machine of [`crate::ActionState`]
/// by guarded transitions.
pub trait ActionLedger {
    /// Records a new action under its key, atomically: if no action has the key, inserts it
    /// (as `Planned`, `Shadowed` or `AwaitingApproval` with its pending approval, in the same
    /// transaction) and commits before returning [`BeginOutcome::New`]; if one exists,
    /// returns it untouched as [`BeginOutcome::AlreadyExists`], whatever its state, so
    /// nothing is re-sent. Idempotent by key: any number of concurrent callers with the same
    /// key get one `New` between them. A `Planned` or `AwaitingApproval` row is durable at
    /// return; a `Shadowed` one (nothing is sent for it) may become durable only with the
    /// next durable commit, never after a later commit. Refused with
    /// [`crate::Refusal::InvalidArgument`] if an approval would expire at or before
    /// `now_ms`; [`Error::NotFound`] if it undoes an action that does not exist.
    fn begin_action(&self, new: &NewAction, now_ms: i64) -> Result<BeginOutcome>;

    /// `Planned` → `Submitted`: the server accepted the action. Records its remediation id (if
    /// any) and its answer (per-machine results). Refused with
    /// [`crate::Refusal::IllegalTransition`] from any other state.
    fn mark_submitted(
        &self,
        id: &ActionId,
        remediation_id: Option<&RemediationId>,
        server_result: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()>;

    /// `Planned` → `Following` in one transaction: the server accepted an isolation change
    /// it could not apply yet (an offline sensor: the command waits for it). Records the
    /// answer as [`ActionLedger::mark_submitted`] does and `detail` (what is waited for) as
    /// the first progress poll, so that no crash can leave the action `Submitted` and have it
    /// sent again. Refused with [`crate::Refusal::IllegalTransition`] from any other state.
    fn mark_queued(
        &self,
        id: &ActionId,
        server_result: &serde_json::Value,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()>;

    /// `Submitted`/`Following` → `Following`: records one progress poll (the poll count goes
    /// up by one). A final progress does not finish the action: call
    /// [`ActionLedger::finish`].
    fn record_progress(
        &self,
        id: &ActionId,
        progress: RemediationProgress,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()>;

    /// `Planned`/`Submitted`/`Following` → `Succeeded`/`Failed`/`TimedOut`. `detail` is kept
    /// as the record's `last_error` for a failure or a timeout. Refused from a final state,
    /// so of two racing finishers exactly one wins.
    fn finish(
        &self,
        id: &ActionId,
        outcome: Outcome,
        detail: Option<&str>,
        now_ms: i64,
    ) -> Result<()>;

    /// Records a failed attempt to send a `Planned` action whose failure is known to be
    /// retryable (the server did not take it), counted by `why` (throttled sends and other
    /// failures apart). Below `max_attempts` of that kind it stays `Planned` and may be sent
    /// again; at the bound it becomes `Failed`. An attempt whose outcome is *unknown* (a
    /// timeout after sending) must be checked on the server first.
    fn record_failed_attempt(
        &self,
        id: &ActionId,
        error: &str,
        why: Unsent,
        max_attempts: u32,
        now_ms: i64,
    ) -> Result<RetryDecision>;

    /// The actions left `Planned`, `Submitted` or `Following` (by a crash, or still in
    /// flight), oldest first. Check each on the server before re-sending anything.
    fn unresolved_actions(&self) -> Result<Vec<ActionRecord>>;

    /// One action; [`Error::NotFound`] if there is none with this id.
    fn get_action(&self, id: &ActionId) -> Result<ActionRecord>;

    /// The action with this key, if any.
    fn find_action_by_key(&self, key: &ActionKey) -> Result<Option<ActionRecord>>;

    /// The full id of the one action whose id starts with `prefix` (at least 4 hex digits),
    /// for operators who type a short id. [`Error::NotFound`] if none matches; refused
    /// ([`crate::Refusal::InvalidArgument`]) if the prefix is malformed or ambiguous.
    fn resolve_action_id(&self, prefix: &str) -> Result<ActionId>;

    /// The actions matching `filter`, newest first.
    fn list_actions(&self, filter: &ActionFilter) -> Result<Vec<ActionRecord>>;
}

/// The approval queue (G6): approvals bound to the sha256 of the exact request, with expiry,
/// and a claim that hands each approved action to exactly one worker.
pub trait Approvals {
    /// The approvals waiting for a decision and not yet expired at `now_ms`, oldest first.
    fn list_pending(&self, now_ms: i64) -> Result<Vec<PendingApproval>>;

    /// Records `by`'s approval of the action `id`; once as many distinct people as its
    /// quorum approved, the action is approved ([`Vote::Approved`]). Refused if the approval
    /// is unknown, already decided, expired (it is then marked expired, and that is
    /// committed), if `by` already approved it (separation of duties: one person counts
    /// once), or if the action no longer matches the hash the approval is bound to; when
    /// `seen_hash` is given (the hash the operator was shown), refused too unless it is that
    /// same hash. Of two concurrent decisions on one approval each is counted once, and the
    /// action is approved once.
    fn approve(
        &self,
        id: &ActionId,
        by: &str,
        seen_hash: Option<&Sha256Digest>,
        now_ms: i64,
    ) -> Result<Vote>;

    /// Denies the action `id` on behalf of `by`: one denial denies, whatever approvals it
    /// had. Refused if unknown, already decided or expired (an expiry discovered here is
    /// committed).
    fn deny(&self, id: &ActionId, by: &str, now_ms: i64) -> Result<()>;

    /// Marks every pending approval whose expiry is at or before `now_ms` as expired (and its
    /// action `Expired`), in one transaction; returns their ids. Idempotent: an approval is
    /// expired once.
    fn expire_due(&self, now_ms: i64) -> Result<Vec<ActionId>>;

    /// Claims every approved, unclaimed action for execution: each moves `Approved` →
    /// `Planned` (guarded, in one transaction), so exactly one caller receives it, however
    /// many claim at once; from there it follows the normal path (`mark_submitted`, ...)
    /// and shows in [`ActionLedger::unresolved_actions`] after a crash. Each comes with who
    /// approved it and when. An action whose request no longer matches its approval hash is
    /// not returned: it is marked `Failed`.
    fn claim_approved(&self, now_ms: i64) -> Result<Vec<ApprovedAction>>;

    /// Puts the expired approval of `id` back in the queue until `expires_at_ms`, bound to
    /// the same hash (for instance when its Malop is updated and the plugin asks again):
    /// `Expired` → `AwaitingApproval`. A denied action stays denied.
    fn requeue_expired(&self, id: &ActionId, expires_at_ms: i64, now_ms: i64) -> Result<()>;

    /// Holds an unresolved action for an operator's decision: `Planned`, or `Submitted` with
    /// no remediation id (its outcome unknown) → `AwaitingApproval`, with a pending approval
    /// bound to its request until `expires_at_ms`. Recovery uses this for an action whose
    /// plugin is no longer configured: it is sent again only once an operator approves it,
    /// and looked for on the server first. `Ok(false)`: not in such a state, left alone.
    fn hold_for_operator(
        &self,
        id: &ActionId,
        expires_at_ms: i64,
        quorum: u32,
        now_ms: i64,
    ) -> Result<bool>;

    /// How many approvals are pending (not yet expired) at `now_ms`.
    fn pending_approvals_count(&self, now_ms: i64) -> Result<u64>;
}

/// Reads of the recorded budget charges inside the transaction of
/// [`Budgets::spend_charges_checked`]: what a backend hands the policy's checks.
pub trait ChargeReads {
    /// Charges of `plugin` (of every plugin for `None`) whose kind is one of `kinds`, made
    /// strictly after `since_ms`.
    fn count(
        &mut self,
        plugin: Option<&PluginName>,
        kinds: &[ActionKind],
        since_ms: TimestampMs,
    ) -> Result<u64>;

    /// The time of the latest charge of `plugin` for `kind` on `target`.
    fn last_charge(
        &mut self,
        plugin: &PluginName,
        kind: ActionKind,
        target: &str,
    ) -> Result<Option<TimestampMs>>;
}

/// Reads of the recorded charges, handed to the check of a spend
/// ([`Budgets::spend_charges_checked`], [`BudgetsExt::spend_charges`]).
pub struct ChargeView<'a> {
    reads: &'a mut dyn ChargeReads,
}

impl<'a> ChargeView<'a> {
    /// A view over a backend's reads (inside its spend transaction).
    pub fn new(reads: &'a mut dyn ChargeReads) -> Self {
        Self { reads }
    }

    /// Charges of `plugin` (of every plugin for `None`) whose kind is one of `kinds`, made
    /// strictly after `since_ms`.
    pub fn count(
        &mut self,
        plugin: Option<&PluginName>,
        kinds: &[ActionKind],
        since_ms: TimestampMs,
    ) -> Result<u64> {
        self.reads.count(plugin, kinds, since_ms)
    }

    /// The time of the latest charge of `plugin` for `kind` on `target`.
    pub fn last_charge(
        &mut self,
        plugin: &PluginName,
        kind: ActionKind,
        target: &str,
    ) -> Result<Option<TimestampMs>> {
        self.reads.last_charge(plugin, kind, target)
    }
}

/// What the check of a spend decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeCheck {
    /// Record the charges and commit.
    Record,
    /// Record nothing (a refusal, or the check failed).
    Discard,
}

/// The check of [`Budgets::spend_charges_checked`]: called once, inside the spend's
/// transaction.
pub type SpendCheck<'c> = dyn FnMut(&mut ChargeView<'_>) -> Result<ChargeCheck> + 'c;

/// The policy gate's budget ledger (G3), durable: one charge per (plugin, action kind,
/// target) of every allowed action, counted by budgets and per-target cooldowns.
/// `policy::BudgetLedger` is implemented over it.
pub trait Budgets {
    /// Atomically: runs `check` once against the recorded charges and, if it answers
    /// [`ChargeCheck::Record`], records every item of `charges` for `plugin` at `now_ms` and
    /// commits durably. If it answers [`ChargeCheck::Discard`] or fails, nothing is
    /// recorded. The check and the insert are serialised against every other spend on the
    /// database (threads, processes, hosts): two concurrent spends cannot both squeeze under
    /// the same budget. Returns what the check answered.
    fn spend_charges_checked(
        &self,
        plugin: &PluginName,
        charges: &[ChargeItem],
        now_ms: TimestampMs,
        check: &mut SpendCheck<'_>,
    ) -> Result<ChargeCheck>;

    /// For each of `charges`, deletes the latest charge of `plugin` with its kind and target
    /// made at or after `since_ms`, in one transaction: units given back because the action
    /// never reached the server or the server rejected the target. Returns how many.
    fn refund_charges(
        &self,
        plugin: &PluginName,
        charges: &[ChargeItem],
        since_ms: TimestampMs,
    ) -> Result<usize>;

    /// Charges of `plugin` (every plugin for `None`) of one of `kinds` made strictly after
    /// `since_ms`: what a budget has used, for `riposte status`.
    fn charges_used(
        &self,
        plugin: Option<&PluginName>,
        kinds: &[ActionKind],
        since_ms: TimestampMs,
    ) -> Result<u64>;

    /// The latest charge of `plugin` for `kind` on `target`.
    fn last_charge(
        &self,
        plugin: &PluginName,
        kind: ActionKind,
        target: &str,
    ) -> Result<Option<TimestampMs>>;

    /// Deletes the charges made at or before `before_ms` (pass now minus the longest window
    /// and cooldown of the policy). Returns how many.
    fn prune_charges(&self, before_ms: TimestampMs) -> Result<usize>;
}

/// Generic conveniences over [`Budgets`], for every implementor (and `dyn Budgets`).
pub trait BudgetsExt: Budgets {
    /// [`Budgets::spend_charges_checked`] with a check that answers `Ok(None)` to record or
    /// `Ok(Some(refusal))` to refuse, in the caller's error type: returns the refusal, or
    /// the check's error, with nothing recorded. The implementation of
    /// `policy::BudgetLedger::try_spend` is this with `policy::evaluate_plan` as `check`.
    fn spend_charges<R, E: From<Error>>(
        &self,
        plugin: &PluginName,
        charges: &[ChargeItem],
        now_ms: TimestampMs,
        check: impl FnOnce(&mut ChargeView<'_>) -> std::result::Result<Option<R>, E>,
    ) -> std::result::Result<Option<R>, E> {
        let mut check = Some(check);
        let mut answer: Option<std::result::Result<Option<R>, E>> = None;
        let decided = self.spend_charges_checked(plugin, charges, now_ms, &mut |view| {
            let Some(check) = check.take() else {
                return Ok(ChargeCheck::Discard);
            };
            match check(view) {
                Ok(None) => Ok(ChargeCheck::Record),
                other => {
                    answer = Some(other);
                    Ok(ChargeCheck::Discard)
                }
            }
        })?;
        match (decided, answer) {
            (ChargeCheck::Record, _) => Ok(None),
            (ChargeCheck::Discard, Some(answer)) => answer,
            (ChargeCheck::Discard, None) => Ok(None),
        }
    }
}

impl<T: Budgets + ?Sized> BudgetsExt for T {}

/// Simple per-scope budget counters with a fixed maximum, for callers without a policy:
/// one stored event per target per spend, so a window slides exactly.
pub trait BudgetCounters {
    /// Charges `targets` (deduplicated, one unit each) to one budget, all or nothing. See
    /// [`BudgetCounters::spend_all`].
    fn spend(
        &self,
        scope: &str,
        kind: &str,
        targets: &[String],
        now_ms: i64,
        window_secs: u64,
        max: u32,
    ) -> Result<SpendOutcome>;

    /// Charges `targets` (deduplicated, one unit each) to every budget in `charges`, in one
    /// transaction serialised against every other spend: either every budget has room and
    /// all are charged, or nothing is recorded and the first budget without room is
    /// reported. A spend with no targets is granted and records nothing.
    fn spend_all(
        &self,
        charges: &[BudgetCharge],
        targets: &[String],
        now_ms: i64,
    ) -> Result<SpendOutcome>;

    /// Targets spent in the window `(now - window, now]` of one budget.
    fn used(&self, scope: &str, kind: &str, window_secs: u64, now_ms: i64) -> Result<u32>;

    /// When an action was last charged on `target` (any scope, any kind), for cooldowns.
    /// Only as far back as [`BudgetCounters::prune_budget_events`] keeps.
    fn last_action_on(&self, target: &str) -> Result<Option<i64>>;

    /// Deletes the budget events at or before `before_ms`. Pass `now` minus the longest
    /// window *and* the longest cooldown in the policy. Returns how many were deleted.
    fn prune_budget_events(&self, before_ms: i64) -> Result<usize>;
}

/// Polling: watermarks per source on the server's clock, and the Malops each plugin handled
/// (keyed by plugin, Malop id and last update time).
pub trait Polling {
    /// The watermark of `source` (e.g. `crimes/unified:MalopProcess`), in server ms.
    fn watermark(&self, source: &str) -> Result<Option<TimestampMs>>;

    /// Records a poll of `source` at `polled_at_ms` (host clock, for `riposte status`) that
    /// saw everything up to `watermark_ms` (server clock). The watermark never moves back,
    /// even between racing callers: a lower value keeps the stored one (the overlap window
    /// is applied when querying, not here). Returns the stored watermark.
    fn set_watermark(
        &self,
        source: &str,
        watermark_ms: TimestampMs,
        polled_at_ms: i64,
    ) -> Result<TimestampMs>;

    /// Records that `plugin` handled the Malop `malop_id` as of its `last_update_ms`.
    /// Idempotent.
    fn mark_handled(
        &self,
        plugin: &PluginName,
        malop_id: &MalopId,
        last_update_ms: TimestampMs,
        now_ms: i64,
    ) -> Result<()>;

    /// [`Polling::mark_handled`] for many Malops in one durable transaction (one fsync): a
    /// group commit of the marks of a batch of invocations. Its durable commit also makes
    /// every earlier deferred commit durable.
    fn mark_handled_all(&self, handled: &[Handled], now_ms: i64) -> Result<()>;

    /// Whether `plugin` already handled the Malop as of `last_update_ms` (or a later update):
    /// a Malop updated since is not handled. With `unreadable` (the parts a fresh read could
    /// not get), a view of the same update that reads a part the plugin was offered the
    /// Malop without is not handled either; without it (completeness not known yet, as in a
    /// poll's list), a Malop handled incomplete is not handled, so it is read again.
    fn is_handled(
        &self,
        plugin: &PluginName,
        malop_id: &MalopId,
        last_update_ms: TimestampMs,
        unreadable: Option<&[MalopPart]>,
    ) -> Result<bool>;

    /// Forgets the Malops handled at or before `before_ms`. Keep well past the poll overlap
    /// window: a forgotten Malop seen again is offered again (its actions are still
    /// deduplicated by the ledger). Returns how many were forgotten.
    fn prune_handled(&self, before_ms: i64) -> Result<usize>;
}

/// Plugin health: consecutive traps and an exponential-backoff pause.
pub trait Health {
    /// Records a trap of `plugin` at `now_ms` (the count of traps in a row goes up by one,
    /// atomically); pauses it per `backoff` when it has trapped `backoff.threshold` times or
    /// more in a row.
    fn record_trap(&self, plugin: &str, now_ms: i64, backoff: &Backoff) -> Result<PauseState>;

    /// Records a clean run of `plugin`: the count of traps in a row and any pause reset.
    /// Idempotent.
    fn record_success(&self, plugin: &str) -> Result<()>;

    /// Until when `plugin` is paused, if it is paused at `now_ms`.
    fn paused_until(&self, plugin: &str, now_ms: i64) -> Result<Option<i64>>;

    /// The plugins paused at `now_ms`, by name.
    fn paused_plugins(&self, now_ms: i64) -> Result<Vec<PausedPlugin>>;
}

/// A key-value store per plugin, with a total size limit per plugin.
pub trait Kv {
    /// The value of `key` in `plugin`'s store.
    fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>>;

    /// Sets `key` in `plugin`'s store. Refused (nothing written) if the key or value is too
    /// large ([`crate::KV_MAX_KEY_BYTES`], [`crate::KV_MAX_VALUE_BYTES`]), or if the
    /// plugin's keys and values would then total more than `limit_bytes`; the size check and
    /// the write are one serialised transaction, so concurrent writers cannot together pass
    /// the limit.
    fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        limit_bytes: u64,
        now_ms: i64,
    ) -> Result<()>;

    /// Deletes `key` from `plugin`'s store; returns whether it existed.
    fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool>;

    /// The bytes `plugin`'s store counts against its limit: keys, values and
    /// [`crate::KV_ENTRY_OVERHEAD_BYTES`] per entry.
    fn kv_usage(&self, plugin: &str) -> Result<u64>;

    /// The keys of `plugin`'s store, sorted.
    fn kv_keys(&self, plugin: &str) -> Result<Vec<String>>;
}

/// Malops offered with unreadable parts, read again with backoff.
pub trait IncompleteMalops {
    /// Records that `malop` was read with unreadable parts (for `error`) at `now_ms`, and
    /// schedules its next read `retry_in(attempts)` ms later, where `attempts` counts the
    /// incomplete reads so far, this one included (read and written in one transaction).
    /// Returns the row.
    fn record_incomplete(
        &self,
        malop: &Malop,
        error: &str,
        now_ms: i64,
        retry_in: &dyn Fn(u32) -> i64,
    ) -> Result<IncompleteMalop>;

    /// Records that reading an incomplete Malop again failed altogether (`error`): one more
    /// attempt, the next one `retry_in(attempts)` ms after `now_ms`. Nothing if the Malop
    /// is not waiting.
    fn reread_failed(
        &self,
        malop_id: &MalopId,
        error: &str,
        now_ms: i64,
        retry_in: &dyn Fn(u32) -> i64,
    ) -> Result<()>;

    /// Forgets an incomplete Malop (it was read in full, or it is given up); whether it was
    /// waiting.
    fn forget_incomplete(&self, malop_id: &MalopId) -> Result<bool>;

    /// Whether the Malop is in the queue of Malops to read again (whatever its view, due or
    /// not): a read in full must take it off.
    fn is_incomplete(&self, malop_id: &MalopId) -> Result<bool>;

    /// The parts the Malop's latest read could not get, while it waits to be read again:
    /// `Some` when it was read incomplete as of `last_update_ms` and is not due at `now_ms`.
    fn waiting_parts(
        &self,
        malop_id: &MalopId,
        last_update_ms: TimestampMs,
        now_ms: i64,
    ) -> Result<Option<Vec<MalopPart>>>;

    /// The incomplete Malops due to be read again at `now_ms`, the most overdue first, at
    /// most `limit`.
    fn due_incomplete(&self, now_ms: i64, limit: usize) -> Result<Vec<IncompleteMalop>>;

    /// What `riposte status` shows of the incomplete Malops.
    fn incomplete_summary(&self) -> Result<IncompleteSummary>;
}

/// Undo records (G8): the inverse of each executed destructive action.
pub trait UndoLog {
    /// Records (or, until it is applied, replaces) the inverse of the action `action_id`.
    /// Call it when the action is submitted, so an action that later fails part-way can
    /// still be undone.
    fn record_undo(&self, action_id: &ActionId, inverse: &ActionRequest, now_ms: i64)
    -> Result<()>;

    /// The recorded inverse of `action_id`, if any.
    fn get_undo(&self, action_id: &ActionId) -> Result<Option<UndoRecord>>;

    /// Records that the inverse of `action_id` was applied by the action `undo_action_id` on
    /// behalf of `by`, and moves the original (`Succeeded`, `Failed` or `TimedOut`) to
    /// `Undone`, in one transaction. Refused if it was already undone, so an inverse is
    /// recorded as applied once.
    fn mark_undone(
        &self,
        action_id: &ActionId,
        undo_action_id: &ActionId,
        by: &str,
        now_ms: i64,
    ) -> Result<()>;
}

/// Time-boxed containment (see [`crate::TimeBox`]): executed actions reverted through their
/// recorded inverse at a deadline unless confirmed.
pub trait TimeBoxes {
    /// Gives the executed (`Succeeded`) action `id` a deadline `limit_ms` from `now_ms`. A
    /// second call leaves the first box as it is. Returns the box.
    fn start_time_box(&self, id: &ActionId, limit_ms: i64, now_ms: i64) -> Result<TimeBox>;

    /// Every open box (neither confirmed nor undone), soonest deadline first.
    fn open_time_boxes(&self) -> Result<Vec<TimeBox>>;

    /// The box of `id`, open or not.
    fn time_box(&self, id: &ActionId) -> Result<Option<TimeBox>>;

    /// The open boxes whose deadline is at or before `now_ms`: to revert.
    fn due_time_boxes(&self, now_ms: i64) -> Result<Vec<TimeBox>>;

    /// The open boxes with a deadline at or before `deadline_before_ms` not yet announced
    /// for that deadline; marks them announced at `now_ms` (each is returned once per
    /// deadline).
    fn warn_time_boxes(&self, deadline_before_ms: i64, now_ms: i64) -> Result<Vec<TimeBox>>;

    /// Confirms the containment of `id` on behalf of `by`: it is no longer reverted. Refused
    /// if the box is confirmed or undone already.
    fn confirm_time_box(&self, id: &ActionId, by: &str, now_ms: i64) -> Result<TimeBox>;

    /// Moves the deadline of `id` to `extra_ms` after the later of its deadline and
    /// `now_ms`, on behalf of `by`, and asks for a new announcement. Refused if the box is
    /// confirmed or undone, or `extra_ms` is not positive.
    fn extend_time_box(
        &self,
        id: &ActionId,
        by: &str,
        extra_ms: i64,
        now_ms: i64,
    ) -> Result<TimeBox>;
}

/// Several hosts on one database: heartbeats and leases (see [`crate::fleet`]).
pub trait Fleet {
    /// Records a host's own account of itself: alive at `host.heartbeat_ms`, holding what
    /// `host.holding` says (cut to [`crate::MAX_HOLDING_BYTES`]; the id to 128 bytes and the
    /// version to 64).
    fn heartbeat(&self, host: &HostStatus) -> Result<()>;

    /// Records that a syslog event reached `host_id` at `at_ms`, between its heartbeats
    /// (never moving the recorded time back; nothing if the host has no heartbeat row).
    fn note_event(&self, host_id: &str, at_ms: i64) -> Result<()>;

    /// Grants the lease `name` to `host_id` until `now_ms + ttl_ms` if nobody holds it, if
    /// its holder let it expire (at or before `now_ms`: a new epoch), or renews it if
    /// `host_id` holds it; otherwise refuses, naming the holder. Of concurrent callers at
    /// most one holds the lease at any point of the commit order.
    fn acquire_lease(
        &self,
        name: &str,
        host_id: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<LeaseGrant>;

    /// A host stopping cleanly: gives up every lease it holds (each expires at `now_ms`, so
    /// another host may take it at once) and forgets its heartbeat row, in one transaction.
    /// Returns how many leases it gave up.
    fn leave(&self, host_id: &str, now_ms: i64) -> Result<usize>;

    /// Forgets the hosts whose last heartbeat is before `silent_since_ms`; how many.
    fn forget_hosts(&self, silent_since_ms: i64) -> Result<usize>;

    /// Every host and every lease, in one snapshot.
    fn fleet(&self) -> Result<(Vec<HostStatus>, Vec<LeaseStatus>)>;
}

/// The status snapshot of `riposte status`.
pub trait Status {
    /// The status snapshot at `now_ms`, read in one consistent snapshot.
    fn status(&self, now_ms: i64) -> Result<StatusSnapshot>;
}

/// The console's users (see [`crate::UserRecord`]): names, roles and password hashes.
pub trait Users {
    /// Adds a user. Refused ([`crate::Refusal::InvalidArgument`]) if the name is taken.
    fn add_user(&self, name: &UserName, role: Role, password_hash: &str, now_ms: i64)
    -> Result<()>;

    /// The user called `name`, if any.
    fn get_user(&self, name: &UserName) -> Result<Option<UserRecord>>;

    /// Every user, by name.
    fn list_users(&self) -> Result<Vec<UserRecord>>;

    /// Removes a user; whether there was one.
    fn remove_user(&self, name: &UserName) -> Result<bool>;

    /// Changes a user's role; [`Error::NotFound`] if there is no such user.
    fn set_user_role(&self, name: &UserName, role: Role, now_ms: i64) -> Result<()>;

    /// Replaces a user's password hash and ends their console sessions; [`Error::NotFound`]
    /// if there is no such user.
    fn set_user_password(&self, name: &UserName, password_hash: &str, now_ms: i64) -> Result<()>;
}

/// The console's sessions (see [`crate::SessionRecord`]), stored by the hash of their token.
pub trait ConsoleSessions {
    /// Stores a new session. First drops the sessions last used before
    /// `expired_before_ms`, then the least recently used ones while `max_sessions` or more
    /// are held.
    fn start_session(
        &self,
        session: &SessionRecord,
        expired_before_ms: i64,
        max_sessions: usize,
    ) -> Result<()>;

    /// The session stored under `token_hash`, if any.
    fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>>;

    /// Marks the session used at `now_ms` (never moving its time back); whether it changed.
    fn touch_session(&self, token_hash: &str, now_ms: i64) -> Result<bool>;

    /// Ends a session; whether there was one.
    fn end_session(&self, token_hash: &str) -> Result<bool>;
}

/// What each plugin did, hour by hour (see [`crate::PluginActivity`]).
pub trait Activity {
    /// Adds `counts` to the hours they name (each row's counts add up, its last invocation
    /// is the latest), and drops the hours that begin before `prune_before_ms`.
    fn add_activity(&self, counts: &[PluginActivity], prune_before_ms: i64) -> Result<()>;

    /// The counts of every plugin for the hours from the one holding `since_ms` on, by
    /// plugin and hour.
    fn activity_since(&self, since_ms: i64) -> Result<Vec<PluginActivity>>;
}

/// Every repository over one database handle: what the service holds
/// (`Arc<dyn Repositories>` for a backend chosen at runtime). Implemented for every type
/// that implements all the repositories.
pub trait Repositories:
    ActionLedger
    + Approvals
    + Budgets
    + BudgetCounters
    + Polling
    + Health
    + Kv
    + IncompleteMalops
    + UndoLog
    + TimeBoxes
    + Fleet
    + Status
    + Users
    + ConsoleSessions
    + Activity
    + Send
    + Sync
{
}

impl<T> Repositories for T where
    T: ActionLedger
        + Approvals
        + Budgets
        + BudgetCounters
        + Polling
        + Health
        + Kv
        + IncompleteMalops
        + UndoLog
        + TimeBoxes
        + Fleet
        + Status
        + Users
        + ConsoleSessions
        + Activity
        + Send
        + Sync
{
}
