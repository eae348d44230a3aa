//! The simulator's mutable state: world, sessions, remediations, reputations, faults, log.

use super::data::{self, MalopKind, SimMachine, SimMalop};
use super::events::MalopEvents;
use super::rng::Rng;
use riposte_syslog::MalopEvent;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// What an injected fault does to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Answer HTTP 500.
    #[value(name = "500")]
    #[serde(rename = "500")]
    Status500,
    /// Answer HTTP 403 without carrying the request out: the API user lacks the role.
    #[value(name = "403")]
    #[serde(rename = "403")]
    Status403,
    /// Answer HTTP 400 without carrying the request out: a query the server does not take.
    #[value(name = "400")]
    #[serde(rename = "400")]
    Status400,
    /// Answer HTTP 429.
    #[value(name = "429")]
    #[serde(rename = "429")]
    Status429,
    /// Answer HTTP 503 without carrying the request out (a server in maintenance, or a
    /// load balancer with no server behind it).
    #[value(name = "503")]
    #[serde(rename = "503")]
    Status503,
    /// Answer 200 with bytes that are not JSON.
    Garbage,
    /// Answer 200 with the real reply cut in half.
    Truncated,
    /// Answer after `delay_ms`.
    Delay,
    /// Answer 200 with a failure body (`{"status": "FAILURE", "message": ...}`) without
    /// carrying the request out: how a server refuses a query the API user has no rights for.
    ErrorBody,
    /// Carry the request out, then answer 200 with a proxy's HTML error page.
    Html,
    /// Answer 200 with the login page without carrying the request out, even on a session
    /// just created: a server that drops every session at once, or an API user the server
    /// lets log in but not call the API.
    LoginPage,
    /// Carry the request out, then break the connection in the middle of the reply.
    Reset,
    /// Answer a visualsearch or `crimes/unified` query with `PARTIAL_SUCCESS`, keeping only
    /// its last result by key: the detection servers holding the others did not answer.
    Partial,
}

/// What `crimes/unified` does with a `LessThan` time filter (the API notes saw only
/// `GreaterThan` in use, so a server may not know it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LessThan {
    /// Applies it.
    #[default]
    Supported,
    /// Answers HTTP 400.
    Refused,
    /// Answers as if it were absent.
    Ignored,
    /// Answers HTTP 200 with `status: FAILURE`.
    Failed,
}

/// What `crimes/unified` does when more Malops match than its result limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverLimit {
    /// Answers the first ones, with `totalPossibleResults` saying how many matched.
    #[default]
    Truncate,
    /// Answers nothing: HTTP 200 with `status: QUERY_LIMIT_CROSSED`.
    QueryLimitCrossed,
}

/// A fault for the next `count` matching requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// What to do.
    pub kind: FaultKind,
    /// How many requests it applies to.
    #[serde(default = "one")]
    pub count: u32,
    /// Only requests whose path starts with this (default: every API request, login included).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// For `delay`: how long.
    #[serde(default)]
    pub delay_ms: u64,
    /// For `500`: carry the request out first, then answer 500 (an outcome-unknown action).
    #[serde(default)]
    pub after_processing: bool,
    /// For `429`: the `Retry-After` header's seconds.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// A fault of `kind` for the next `count` requests.
    pub fn new(kind: FaultKind, count: u32) -> Self {
        Self {
            kind,
            count,
            path_prefix: None,
            delay_ms: 0,
            after_processing: false,
            retry_after_secs: None,
        }
    }

    /// Restricts the fault to paths starting with `prefix`.
    pub fn on(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.to_owned());
        self
    }

    /// Carries the request out before failing it.
    pub fn after_processing(mut self) -> Self {
        self.after_processing = true;
        self
    }

    /// Sets the `Retry-After` seconds of a `429` fault.
    pub fn retry_after_secs(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Sets the delay of a `delay` fault.
    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_ms = ms;
        self
    }
}

/// One request the simulator saw (the login password is redacted).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// Sequence number from 0.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Body as text (lossy UTF-8).
    pub body: String,
    /// Status answered.
    pub status: u16,
    /// The fault applied, if any.
    pub fault: Option<FaultKind>,
    /// When the request arrived, by the wall clock: microseconds since the Unix epoch (for
    /// latencies; the server clock `clock_ms` only moves on mutations).
    pub received_us: u64,
}

/// What a new Malop should be (`POST /sim/malops`, [`crate::SimHandle::create_malop`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct MalopSpec {
    /// Its kind (default: the next in the seeded order).
    pub kind: Option<MalopKind>,
    /// Bring the sensors of its machines online first, so that a rule acts on all of them.
    pub machines_online: bool,
    /// The one machine it affects (pylumId, guid or host name; default: one to three
    /// machines drawn from the world).
    pub machine: Option<String>,
}

/// Why a Malop could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no machine is `{0}` (pylumId, guid or host name)")]
pub struct UnknownMachine(pub String);

/// A Malop just created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMalop {
    /// Its id (`11.<i64>`).
    pub id: String,
    /// Its `creationTime` on the server clock (ms).
    pub creation_time: i64,
    /// When it was created by the wall clock, that is when its `Malop Created` event was
    /// queued (compare with [`LoggedRequest::received_us`]).
    pub created_at: SystemTime,
}

/// One remediation item and its predetermined final result.
#[derive(Clone, Debug)]
pub struct SimAction {
    /// Machine guid.
    pub machine: String,
    /// Target guid.
    pub target: String,
    /// `actionType`.
    pub action: String,
    /// `None` = SUCCESS; `Some((message, errorType))` = FAILURE.
    pub error: Option<(String, String)>,
}

/// A remediation in progress.
#[derive(Clone, Debug)]
pub struct SimRemediation {
    /// UUID.
    pub id: String,
    /// Malop id given in the request.
    pub malop_id: Option<String>,
    /// `initiatorUserName`.
    pub initiator: String,
    /// ms.
    pub start: i64,
    /// Steps taken: 0 PENDING, 1 IN_PROGRESS, 2+ final.
    pub steps: u32,
    /// Aborted before finishing.
    pub aborted: bool,
    /// ms when it became final.
    pub end: Option<i64>,
    /// Items.
    pub actions: Vec<SimAction>,
}

/// A file in quarantine: the server gives the quarantined copy an element guid of its own,
/// which `UNQUARANTINE_FILE` takes (not the original file's).
#[derive(Clone, Debug)]
pub struct SimQuarantine {
    /// The quarantined copy's guid.
    pub guid: String,
    /// The original file.
    pub file: super::data::SimFile,
    /// The machine it is on.
    pub machine: String,
}

/// Steps a remediation needs to become final.
pub(crate) const FINAL_STEP: u32 = 2;

/// What a server without investigation rights for the API user answers a `visualsearch`
/// query (HTTP 200).
pub(crate) const INVESTIGATION_REFUSED: &str =
    "Access denied: the user is not allowed to run investigation queries";

/// A custom reputation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimReputation {
    /// `blacklist` / `whitelist`.
    pub verdict: String,
    /// Prevent execution.
    pub prevent: bool,
    /// Comment.
    pub comment: String,
}

/// Everything the simulator knows.
#[derive(Debug)]
pub struct SimState {
    /// PRNG for ids made at run time.
    pub rng: Rng,
    /// The server clock (ms); moves only on mutations and `advance`.
    pub clock_ms: i64,
    /// Machines.
    pub machines: Vec<SimMachine>,
    /// Malops.
    pub malops: Vec<SimMalop>,
    /// Remediations, oldest first.
    pub remediations: Vec<SimRemediation>,
    /// Custom reputations by key.
    pub reputations: BTreeMap<String, SimReputation>,
    /// Valid JSESSIONIDs.
    pub sessions: HashSet<String>,
    /// Pending faults, applied in order.
    pub faults: VecDeque<Fault>,
    /// Request log.
    pub log: Vec<LoggedRequest>,
    /// Login user.
    pub username: String,
    /// Login password.
    pub password: String,
    /// Whether login asks for a 2FA code.
    pub two_factor: bool,
    /// Whether login answers with a redirect (302: to `/` when it worked, back to
    /// `/login.html` when it did not), as a server does to a browser's form, instead of 200
    /// and a page.
    pub login_redirects: bool,
    /// Remediation steps taken per progress/status poll (0 = only `/sim/advance` moves them).
    pub steps_per_poll: u32,
    /// Refuse every investigation query (`visualsearch`) with a failure body, as a server does
    /// for an API user without investigation rights.
    pub refuse_investigation: bool,
    /// How long after its request every API answer (login included) comes: a real tenant's
    /// network round trip and server time. Requests in flight wait side by side, not in turn.
    pub latency_ms: u64,
    /// The most results one `crimes/unified` answer holds (a real server's is 10,000; the
    /// request's `totalResultLimit` can only lower it).
    pub result_limit: usize,
    /// What `crimes/unified` does with a `LessThan` time filter.
    pub less_than: LessThan,
    /// What `crimes/unified` does past its result limit.
    pub over_limit: OverLimit,
    /// Read `sensors/query`'s `offset` as an item offset, as some servers do (XS pages with
    /// `(page - 1) * pageSize`), instead of a page index.
    pub sensor_offset_is_item: bool,
    next_seq: u64,
    malops_made: usize,
    /// Where Malop events go, if anywhere.
    pub(crate) events: Option<MalopEvents>,
}

impl SimState {
    /// A world of `malops` Malops from `seed`, with the server clock at `now`.
    pub fn generate(
        seed: u64,
        malops: usize,
        now: i64,
        username: String,
        password: String,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let machines = data::machines(&mut rng, (malops * 2).clamp(4, 64));
        let list = (0..malops)
            .map(|n| data::malop(&mut rng, n, &machines, now))
            .collect();
        Self::with_world(rng, now, machines, list, username, password)
    }

    /// A world of exactly these machines and Malops; `rng` makes the ids created at run time.
    pub(super) fn with_world(
        rng: Rng,
        now: i64,
        machines: Vec<SimMachine>,
        malops: Vec<SimMalop>,
        username: String,
        password: String,
    ) -> Self {
        let malops_made = malops.len();
        Self {
            rng,
            clock_ms: now,
            machines,
            malops,
            remediations: Vec::new(),
            reputations: BTreeMap::new(),
            sessions: HashSet::new(),
            faults: VecDeque::new(),
            log: Vec::new(),
            username,
            password,
            two_factor: false,
            login_redirects: false,
            steps_per_poll: 1,
            refuse_investigation: false,
            latency_ms: 0,
            result_limit: crate::SERVER_RESULT_LIMIT,
            sensor_offset_is_item: false,
            less_than: LessThan::Supported,
            over_limit: OverLimit::Truncate,
            next_seq: 0,
            malops_made,
            events: None,
        }
    }

    /// Moves the clock forward by one second and returns it (for a mutation's timestamp).
    pub fn tick(&mut self) -> i64 {
        self.clock_ms += 1000;
        self.clock_ms
    }

    /// Creates a new Malop now (a "Malop appears") and returns its id.
    pub fn add_malop(&mut self) -> String {
        self.create_malop(MalopSpec::default())
            .expect("a Malop on machines drawn from the world")
            .id
    }

    /// Creates a new Malop now as `spec` says, and sends its `Malop Created` event.
    pub fn create_malop(&mut self, spec: MalopSpec) -> Result<NewMalop, UnknownMachine> {
        let on = match &spec.machine {
            Some(key) => {
                let machine = self
                    .machines
                    .iter()
                    .find(|m| m.is_named(key))
                    .ok_or_else(|| UnknownMachine(key.clone()))?;
                vec![machine.clone()]
            }
            None => self.machines.clone(),
        };
        let now = self.tick();
        let kind = spec
            .kind
            .unwrap_or_else(|| MalopKind::nth(self.malops_made));
        let mut m = data::malop_of_kind(&mut self.rng, kind, &on, now);
        self.malops_made += 1;
        m.creation_time = now;
        m.last_update_time = now;
        if spec.machines_online {
            for machine in &m.machines {
                self.set_online(machine, true);
            }
        }
        let created_at = SystemTime::now();
        if let Some(events) = &self.events {
            events.emit(&m, MalopEvent::Created, now);
        }
        let id = m.guid.clone();
        self.malops.push(m);
        Ok(NewMalop {
            id,
            creation_time: now,
            created_at,
        })
    }

    /// Marks a Malop as updated now, and sends its `Malop Updated` event; returns the new
    /// update time.
    pub fn touch_malop(&mut self, id: &str) -> Option<i64> {
        let now = self.tick();
        let m = self.malops.iter_mut().find(|m| m.guid == id)?;
        m.last_update_time = now;
        if let Some(events) = &self.events {
            events.emit(m, MalopEvent::Updated, now);
        }
        Some(now)
    }

    /// The Malop with this id.
    pub fn malop(&self, id: &str) -> Option<&SimMalop> {
        self.malops.iter().find(|m| m.guid == id)
    }

    /// The machine with this guid.
    pub fn machine(&self, guid: &str) -> Option<&SimMachine> {
        self.machines.iter().find(|m| m.guid == guid)
    }

    /// Sets a sensor online or offline; coming online applies a primed isolation change.
    pub fn set_online(&mut self, key: &str, online: bool) -> bool {
        let Some(m) = self.machines.iter_mut().find(|m| m.is_named(key)) else {
            return false;
        };
        m.online = online;
        if online && let Some(isolated) = m.primed.take() {
            m.isolated = isolated;
        }
        true
    }

    /// Advances every unfinished remediation by `steps`.
    pub fn advance(&mut self, steps: u32) {
        let now = self.clock_ms;
        for r in &mut self.remediations {
            step(r, steps, now);
        }
    }

    /// Advances one remediation by the per-poll step.
    pub(crate) fn poll_step(&mut self, index: usize) {
        let (steps, now) = (self.steps_per_poll, self.clock_ms);
        if let Some(r) = self.remediations.get_mut(index) {
            step(r, steps, now);
        }
    }

    /// The files in quarantine now: each successful `QUARANTINE_FILE` item puts a copy there
    /// (with a guid derived from the remediation), and a later successful
    /// `UNQUARANTINE_FILE` of that copy's guid takes it out.
    pub fn quarantines(&self) -> Vec<SimQuarantine> {
        let done = |r: &&SimRemediation| r.steps >= FINAL_STEP && !r.aborted;
        let mut held: Vec<SimQuarantine> = Vec::new();
        for r in self.remediations.iter().filter(done) {
            for a in r.actions.iter().filter(|a| a.error.is_none()) {
                match a.action.as_str() {
                    "QUARANTINE_FILE" => {
                        let file = self
                            .malops
                            .iter()
                            .flat_map(|m| &m.files)
                            .find(|f| f.guid == a.target);
                        if let Some(file) = file {
                            held.push(SimQuarantine {
                                guid: quarantine_guid(&a.machine, &r.id, &a.target),
                                file: file.clone(),
                                machine: a.machine.clone(),
                            });
                        }
                    }
                    "UNQUARANTINE_FILE" => held.retain(|q| q.guid != a.target),
                    _ => {}
                }
            }
        }
        held
    }

    /// Takes the fault that applies to `path`, if any.
    pub(crate) fn take_fault(&mut self, path: &str) -> Option<Fault> {
        let idx = self.faults.iter().position(|f| {
            f.count > 0 && f.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })?;
        let fault = self.faults[idx].clone();
        self.faults[idx].count -= 1;
        if self.faults[idx].count == 0 {
            self.faults.remove(idx);
        }
        Some(fault)
    }

    /// Appends to the request log, returning the entry's index.
    pub fn record(
        &mut self,
        method: &str,
        path: &str,
        body: String,
        fault: Option<FaultKind>,
        received: SystemTime,
    ) -> usize {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.log.push(LoggedRequest {
            seq,
            method: method.to_owned(),
            path: path.to_owned(),
            body,
            status: 0,
            fault,
            received_us: super::events::epoch_us(received),
        });
        self.log.len() - 1
    }

    /// A new random JSESSIONID (32 upper-case hex).
    pub(crate) fn new_session_id(&mut self) -> String {
        self.rng.hex(32)
    }
}

/// The guid of the copy a quarantine made: the machine's prefix and a number derived from the
/// remediation and the file (FNV-1a), so the same world gives the same guids.
fn quarantine_guid(machine: &str, remediation: &str, file: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in remediation.bytes().chain([0]).chain(file.bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let prefix = machine.split('.').next().unwrap_or("0");
    format!("{prefix}.{}", hash as i64)
}

fn step(r: &mut SimRemediation, steps: u32, now: i64) {
    if r.steps >= FINAL_STEP || r.aborted {
        return;
    }
    r.steps = r.steps.saturating_add(steps);
    if r.steps >= FINAL_STEP {
        r.end = Some(now);
    }
}

/// State shared by all requests.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<SimState>,
}

impl Shared {
    /// Wraps the state.
    pub fn new(state: SimState) -> Self {
        Self {
            state: Mutex::new(state),
        }
    }

    /// Locks the state (a poisoned lock is recovered: the state stays usable).
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
