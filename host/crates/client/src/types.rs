//! Result types of the client that the domain module does not define.

use riposte_domain::{
    ElementGuid, MachineGuid, MalopId, PylumId, RemediationId, RemediationKind,
    RemediationProgress, TimestampMs, Verdict,
};
use std::collections::{BTreeMap, HashMap};

/// A sensor as `sensors/query` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sensor {
    /// The sensor's pylumId, used for isolation.
    pub pylum_id: PylumId,
    /// The machine element guid, when the server gives it.
    pub machine_guid: Option<MachineGuid>,
    /// The host name.
    pub machine_name: String,
    /// Connection state.
    pub status: SensorStatus,
    /// Whether the machine is isolated.
    pub isolated: bool,
    /// `osType` as the server spells it.
    pub os_type: String,
    /// The internal IP address, if known.
    pub internal_ip: Option<String>,
    /// `groupName`: the sensor group, if any.
    pub group_name: Option<String>,
}

impl Sensor {
    /// Whether the sensor is connected right now.
    pub fn is_online(&self) -> bool {
        self.status == SensorStatus::Online
    }
}

/// The `status` of a sensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SensorStatus {
    /// Connected.
    Online,
    /// Not connected.
    Offline,
    /// Not seen for a long time.
    Stale,
    /// Archived by an operator.
    Archived,
    /// A value this version does not know.
    Unknown,
}

impl SensorStatus {
    /// Parses the server's spelling.
    pub fn from_api(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "online" => Self::Online,
            "offline" => Self::Offline,
            "stale" => Self::Stale,
            "archived" => Self::Archived,
            _ => Self::Unknown,
        }
    }
}

/// One page of `sensors/query`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorsPage {
    /// The sensors on this page.
    pub sensors: Vec<Sensor>,
    /// `totalResults`.
    pub total_results: u64,
    /// `hasMoreResults`: ask for the next page index.
    pub has_more: bool,
}

/// One page of `mmng/v2/malops`, or one `crimes/unified` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalopsPage {
    /// The Malops on this page.
    pub malops: Vec<riposte_domain::Malop>,
    /// `totalHits`: how many Malops match in all.
    pub total_hits: u64,
    /// `PARTIAL_SUCCESS` with the server's message: some detection servers did not answer,
    /// so Malops may be missing.
    pub partial: Option<String>,
    /// The Malops whose `affectedMachines` the server cut at the query's `perFeatureLimit`,
    /// with how many machines it says they have.
    pub machines_cut: Vec<(riposte_domain::MalopId, u64)>,
}

/// The Malops of one kind updated since a time, from as many `crimes/unified` queries as
/// it took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MalopListing {
    /// The Malops, oldest update first.
    pub malops: Vec<riposte_domain::Malop>,
    /// Whether Malops may be missing, so the listing is not taken as all there is: some
    /// answer was partial (`PARTIAL_SUCCESS`: a detection server did not answer), or the
    /// server could not narrow a window that held more than it answers.
    pub incomplete: bool,
}

/// The error the server attached to a remediation item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemediationError {
    /// `error.message`.
    pub message: String,
    /// `error.errorType`.
    pub error_type: String,
}

/// One `statusLog` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemediationEntry {
    /// `machineId`: the machine element guid.
    pub machine_guid: MachineGuid,
    /// `targetId`: the element acted on.
    pub target_guid: ElementGuid,
    /// `actionType`, if this version knows it.
    pub kind: Option<RemediationKind>,
    /// `status`.
    pub status: RemediationProgress,
    /// `timestamp` (ms).
    pub timestamp: Option<TimestampMs>,
    /// `error` (null on success).
    pub error: Option<RemediationError>,
}

impl RemediationEntry {
    /// Whether the server rejected the item as invalid (`INVALID_ARGUMENT`: an unknown
    /// machine, target or action), so it certainly did nothing to it.
    pub fn rejected_as_unknown(&self) -> bool {
        self.status == RemediationProgress::Failure
            && self
                .error
                .as_ref()
                .is_some_and(|e| e.error_type.eq_ignore_ascii_case("INVALID_ARGUMENT"))
    }
}

/// The reply of `remediate`, `remediate/progress`, `remediate/status` and `remediate/abort`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemediationReport {
    /// `malopId` (absent when the remediation was sent without one).
    pub malop_id: Option<MalopId>,
    /// `remediationId`.
    pub remediation_id: RemediationId,
    /// `start` (ms).
    pub start: Option<TimestampMs>,
    /// `end` (ms), once finished.
    pub end: Option<TimestampMs>,
    /// `initiatingUser`.
    pub initiating_user: String,
    /// `statusLog`, in the server's order.
    pub entries: Vec<RemediationEntry>,
}

impl RemediationReport {
    /// The overall status, over every item (machine, target and action) the remediation
    /// names, each at its newest entry ([`RemediationReport::latest`]): final only once every
    /// item is final, then `Failure` if any item failed. (XS and SP read the last entry, which
    /// is the same for the one item they send; a server answers each item of a request of
    /// several in its own time, so the last entry may be one item's success while another
    /// is pending or failed.) `Unknown` if the log is empty.
    pub fn status(&self) -> RemediationProgress {
        use RemediationProgress::*;
        let latest = self.latest();
        let any = |status| latest.iter().any(|e| e.status == status);
        if latest.is_empty() {
            Unknown
        } else if latest.iter().all(|e| e.status.is_final()) {
            if any(Failure) { Failure } else { Success }
        } else if any(InProgress) {
            InProgress
        } else if any(Pending) {
            Pending
        } else {
            Unknown
        }
    }

    /// The newest entry of each item, in the order the items first appear: by `timestamp`
    /// where both entries have one, else the later in the log. Linear in the log's length,
    /// which is the server's to choose.
    pub fn latest(&self) -> Vec<&RemediationEntry> {
        let mut latest: Vec<&RemediationEntry> = Vec::new();
        let mut index: HashMap<(&MachineGuid, &ElementGuid, Option<RemediationKind>), usize> =
            HashMap::new();
        for entry in &self.entries {
            let item = (&entry.machine_guid, &entry.target_guid, entry.kind);
            match index.get(&item) {
                Some(&at) if !is_older(entry, latest[at]) => latest[at] = entry,
                Some(_) => {}
                None => {
                    index.insert(item, latest.len());
                    latest.push(entry);
                }
            }
        }
        latest
    }

    /// The first item whose newest entry failed, if any.
    pub fn failure(&self) -> Option<&RemediationEntry> {
        self.latest()
            .into_iter()
            .find(|e| e.status == RemediationProgress::Failure)
    }
}

/// Whether `entry` is older than `seen` by their timestamps (neither is, without both).
fn is_older(entry: &RemediationEntry, seen: &RemediationEntry) -> bool {
    matches!((entry.timestamp, seen.timestamp), (Some(a), Some(b)) if a < b)
}

/// What the server said about isolating or un-isolating one sensor.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IsolationStatus {
    /// `Succeeded`.
    Succeeded,
    /// `Primed`: the sensor is offline; the command is queued until it connects.
    Primed,
    /// Any other value (`UnknownProbe`, `Disconnected`, `TimeoutSending`, `Failed`...), as sent.
    Failed(String),
    /// The command named the sensor and the server's answer does not: nothing says it was
    /// applied, so it is not counted as applied.
    Unanswered,
}

/// The most sensors an isolation answer names beyond those sent that are kept.
const UNSENT_KEPT: usize = 16;

/// The longest pylumId kept from an isolation answer among sensors not sent.
const PYLUM_ID_MAX_BYTES: usize = 256;

/// The most characters of an unknown isolation status kept.
const STATUS_MAX_CHARS: usize = 64;

impl IsolationStatus {
    /// Parses the server's status string (an unknown one is kept to its first
    /// [`STATUS_MAX_CHARS`] characters: the server's names are short).
    pub fn from_api(value: &str) -> Self {
        match value {
            "Succeeded" => Self::Succeeded,
            "Primed" => Self::Primed,
            other => Self::Failed(other.chars().take(STATUS_MAX_CHARS).collect()),
        }
    }

    /// Whether the sensor carried the command out: `Succeeded` only.
    pub fn is_applied(&self) -> bool {
        matches!(self, Self::Succeeded)
    }

    /// Whether the command is applied or waits, queued by the server, for the offline sensor
    /// to connect (`Primed`): nothing refused it, but a queued one is not applied yet.
    pub fn is_applied_or_queued(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Primed)
    }
}

/// The reply of `isolate` / `un-isolate`: one status per pylumId, for every sensor the
/// command named (one the answer left out is [`IsolationStatus::Unanswered`]) and any other
/// the answer listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IsolationReport {
    /// Status per sensor.
    pub outcomes: BTreeMap<PylumId, IsolationStatus>,
}

impl IsolationReport {
    /// Whether every sensor carried the command out (`Succeeded`).
    pub fn all_applied(&self) -> bool {
        !self.outcomes.is_empty() && self.outcomes.values().all(IsolationStatus::is_applied)
    }

    /// Whether no sensor refused the command: each carried it out or has it queued until it
    /// connects (`Primed`).
    pub fn none_refused(&self) -> bool {
        !self.outcomes.is_empty()
            && self
                .outcomes
                .values()
                .all(IsolationStatus::is_applied_or_queued)
    }

    /// The sensors the server queued the command for (`Primed`: offline until they connect).
    pub fn queued(&self) -> impl Iterator<Item = &PylumId> {
        self.outcomes
            .iter()
            .filter(|(_, s)| **s == IsolationStatus::Primed)
            .map(|(id, _)| id)
    }

    /// Marks each of `sent` the answer did not mention as [`IsolationStatus::Unanswered`], and
    /// keeps at most [`UNSENT_KEPT`] of the sensors it names that were not sent (ids of at
    /// most [`PYLUM_ID_MAX_BYTES`]): the report is stored with the action.
    pub(crate) fn account_for(mut self, sent: &[PylumId]) -> Self {
        let mut unsent = 0;
        self.outcomes.retain(|id, _| {
            sent.contains(id)
                || (id.as_str().len() <= PYLUM_ID_MAX_BYTES && {
                    unsent += 1;
                    unsent <= UNSENT_KEPT
                })
        });
        for id in sent {
            self.outcomes
                .entry(id.clone())
                .or_insert(IsolationStatus::Unanswered);
        }
        self
    }
}

/// One row of `classification/download`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReputationEntry {
    /// The hash, IP or domain.
    pub key: String,
    /// The verdict, if the `reputation` column names one.
    pub verdict: Option<Verdict>,
    /// `prevent execution`.
    pub prevent: bool,
    /// `comment`.
    pub comment: String,
    /// `remove`.
    pub remove: bool,
}

/// A Malop comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// `commentId`.
    pub id: String,
    /// `username`.
    pub username: String,
    /// `message` (HTML-unescaped).
    pub message: String,
    /// `timestamp` (ms).
    pub timestamp: Option<TimestampMs>,
}

/// A reference to an element inside `elementValues`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElementRef {
    /// `elementType`.
    pub element_type: String,
    /// `guid`.
    pub guid: String,
    /// `name`.
    pub name: String,
}

/// One element of a visualsearch or crimes/unified result, with typed accessors.
#[derive(Clone, Debug, PartialEq)]
pub struct Element {
    /// `guidString` or the map key.
    pub guid: String,
    /// `simpleValues`: field → values (strings as the server sends them).
    pub simple: BTreeMap<String, Vec<String>>,
    /// `elementValues`: field → referenced elements.
    pub elements: BTreeMap<String, Vec<ElementRef>>,
    /// `elementValues`: field → how many elements the server says it references
    /// (`totalValues`), where it says so: more than listed when the list was cut at the
    /// query's `perFeatureLimit`.
    pub ref_totals: BTreeMap<String, u64>,
    /// `malopPriority`, a member of the element itself (not a simple value), rendered as
    /// text; `None` when absent or null.
    pub malop_priority: Option<String>,
}

impl Element {
    /// The first value of a simple field.
    pub fn first(&self, field: &str) -> Option<&str> {
        self.simple
            .get(field)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// All values of a simple field.
    pub fn all(&self, field: &str) -> &[String] {
        self.simple.get(field).map_or(&[], Vec::as_slice)
    }

    /// The referenced elements of an element field.
    pub fn refs(&self, field: &str) -> &[ElementRef] {
        self.elements.get(field).map_or(&[], Vec::as_slice)
    }

    /// Whether the server sent the element field at all (an empty list is a list; a
    /// missing field says nothing).
    pub fn has_refs(&self, field: &str) -> bool {
        self.elements.contains_key(field)
    }

    /// How many elements an element field references in all, when the server listed fewer
    /// (`totalValues` above the list's length: cut at `perFeatureLimit`).
    pub fn refs_cut(&self, field: &str) -> Option<u64> {
        let total = *self.ref_totals.get(field)?;
        (total > self.refs(field).len() as u64).then_some(total)
    }
}
