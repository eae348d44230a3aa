//! JSON as the real server shapes it: strings for scalars in `simpleValues`, envelopes,
//! remediation reports, sensors, inbox and mmng models.

use super::data::{SimConnection, SimFile, SimMachine, SimMalop, SimProcess};
use super::state::{FINAL_STEP, SimRemediation, SimState};
use riposte_domain::{ManagementStatus, RootCause};
use serde_json::{Map, Value, json};

type Refs = Vec<(&'static str, String, String)>;

fn simple(fields: Vec<(&str, Vec<String>)>) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!({"totalValues": v.len(), "values": v})))
        .collect();
    Value::Object(map)
}

fn refs(fields: Vec<(&str, Refs)>) -> Value {
    refs_within(fields, usize::MAX)
}

/// `elementValues` with each list cut at `per_feature` (a query's `perFeatureLimit`), its
/// `totalValues` the whole count.
fn refs_within(fields: Vec<(&str, Refs)>, per_feature: usize) -> Value {
    let map: Map<String, Value> = fields
        .into_iter()
        .map(|(k, list)| {
            let total = list.len();
            let items: Vec<Value> = list
                .iter()
                .take(per_feature)
                .map(|(t, g, n)| {
                    json!({"elementType": t, "guid": g, "name": n,
                                        "hasSuspicions": true, "hasMalops": false})
                })
                .collect();
            let v = json!({"totalValues": total, "totalSuspicious": 0,
                "totalMalicious": 0, "guessedTotal": 0, "elementValues": items});
            (k.to_owned(), v)
        })
        .collect();
    Value::Object(map)
}

fn element(guid: &str, simple_values: Value, element_values: Value) -> Value {
    json!({"simpleValues": simple_values, "elementValues": element_values, "suspicions": {},
        "filterData": {"sortInGroupValue": guid, "groupByValue": guid}, "isMalicious": false,
        "suspicionCount": 0, "guidString": guid, "labelsIds": null, "malopPriority": null,
        "malicious": false, "suspect": false})
}

/// The visualsearch / crimes/unified envelope around result elements.
pub fn envelope(results: Map<String, Value>) -> Value {
    let n = results.len();
    envelope_of(results, n)
}

/// [`envelope`] of the first results of `total` that matched.
pub(crate) fn envelope_of(results: Map<String, Value>, total: usize) -> Value {
    let n = results.len();
    json!({"status": "SUCCESS", "message": "", "hidePartialSuccess": false,
        "expectedResults": n, "failures": 0,
        "failedServersInfo": {"onlineFailedServers": [], "offlineServers": [],
            "onlineFailedServersPercentage": 0.0, "totalFailedServersPercentage": 0.0},
        "data": {"resultIdToElementDataMap": results, "suspicionsMap": {}, "evidenceMap": {},
            "totalPossibleResults": total, "guessedPossibleResults": 0, "queryLimits": {},
            "queryTerminated": false, "pathResultCounts": [], "guids": [],
            "paginationToken": null}})
}

/// A 200-with-error body.
pub fn failure(message: &str) -> Value {
    json!({"status": "FAILURE", "message": message, "data": null})
}

fn s(v: impl ToString) -> Vec<String> {
    vec![v.to_string()]
}

/// A value the server may not know: no values at all when it does not.
fn known(v: &Option<String>) -> Vec<String> {
    v.iter().cloned().collect()
}

fn machine_ref(st: &SimState, guid: &str) -> (&'static str, String, String) {
    let name = st.machine(guid).map_or(String::new(), |m| m.name.clone());
    ("Machine", guid.to_owned(), name)
}

/// A Malop element with its element lists cut at `per_feature` (the query's
/// `perFeatureLimit`); `None` mimics templateContext OVERVIEW (`elementValues: {}`).
pub fn malop(st: &SimState, m: &SimMalop, per_feature: Option<usize>) -> Value {
    let causes = &m.root_causes;
    let column = |f: fn(&RootCause) -> String| causes.iter().map(f).collect::<Vec<_>>();
    // One hash per root cause, aligned by index ("" where the server knows none).
    let hashes = column(|c| c.hashes.first().cloned().unwrap_or_default());
    let status = m.status.as_api().unwrap_or("UNKNOWN");
    let sv = simple(vec![
        ("elementDisplayName", s(&m.name)),
        ("detectionType", s(&m.detection_type)),
        ("malopActivityTypes", m.activity_types.clone()),
        ("creationTime", s(m.creation_time)),
        ("malopStartTime", s(m.creation_time)),
        ("malopLastUpdateTime", s(m.last_update_time)),
        ("managementStatus", s(status)),
        (
            "decisionFeature",
            s(format!("Process.{}(Malop decision)", decision(m))),
        ),
        ("rootCauseElementNames", column(|c| c.name.clone())),
        ("rootCauseElementTypes", column(|c| c.element_type.clone())),
        ("rootCauseElementHashes", hashes),
        ("isBlocked", s("false")),
        (
            "hasRansomwareSuspendedProcesses",
            s(m.detection_type == "RANSOMWARE"),
        ),
    ]);
    let ev = if let Some(per_feature) = per_feature {
        refs_within(
            vec![
                (
                    "affectedMachines",
                    m.machines.iter().map(|g| machine_ref(st, g)).collect(),
                ),
                (
                    "affectedUsers",
                    m.users
                        .iter()
                        .map(|(g, n)| ("User", g.clone(), n.clone()))
                        .collect(),
                ),
                (
                    "suspects",
                    m.suspects
                        .iter()
                        .map(|p| ("Process", p.guid.clone(), p.name.clone()))
                        .collect(),
                ),
                (
                    "filesToRemediate",
                    m.files
                        .iter()
                        .map(|f| ("File", f.guid.clone(), f.name.clone()))
                        .collect(),
                ),
                (
                    "rootCauseElements",
                    m.suspects
                        .iter()
                        .take(1)
                        .map(|p| ("Process", p.guid.clone(), p.name.clone()))
                        .collect(),
                ),
            ],
            per_feature,
        )
    } else {
        json!({})
    };
    // The priority is a member of the element, not a simple value (§2.2).
    let mut e = element(&m.guid, sv, ev);
    e["malopPriority"] = json!(m.priority);
    e
}

fn decision(m: &SimMalop) -> &'static str {
    match m.detection_type.as_str() {
        "BLACKLIST" => "blackListedFileHash",
        "RANSOMWARE" => "ransomwareBehavior",
        "KNOWN_MALWARE" => "knownMalware",
        _ => "lateralMovement",
    }
}

/// A Process element.
pub fn process(st: &SimState, p: &SimProcess) -> Value {
    let sv = simple(vec![
        ("elementDisplayName", s(&p.name)),
        ("imageFile.sha1String", known(&p.sha1)),
        ("commandLine", s(format!("C:\\Users\\Public\\{}", p.name))),
    ]);
    let ev = refs(vec![
        ("ownerMachine", vec![machine_ref(st, &p.machine)]),
        (
            "hasAutorunEvidence",
            p.autoruns
                .iter()
                .map(|(g, n)| ("RegistryEntry", g.clone(), n.clone()))
                .collect(),
        ),
        (
            "connections",
            p.connections
                .iter()
                .map(|c| ("Connection", c.guid.clone(), c.remote_ip.clone()))
                .collect(),
        ),
    ]);
    element(&p.guid, sv, ev)
}

/// A File element.
pub fn file(st: &SimState, f: &SimFile) -> Value {
    let sv = simple(vec![
        ("elementDisplayName", s(&f.name)),
        ("md5String", known(&f.md5)),
        ("sha1String", known(&f.sha1)),
        ("correctedPath", s(format!("c:\\users\\public\\{}", f.name))),
    ]);
    element(
        &f.guid,
        sv,
        refs(vec![("ownerMachine", vec![machine_ref(st, &f.machine)])]),
    )
}

/// A QuarantineFile element: the quarantined copy of a file, with the original's name and
/// hashes, on its machine.
pub fn quarantine(st: &SimState, q: &super::state::SimQuarantine) -> Value {
    let sv = simple(vec![
        ("elementDisplayName", s(&q.file.name)),
        ("md5String", known(&q.file.md5)),
        ("sha1String", known(&q.file.sha1)),
    ]);
    element(
        &q.guid,
        sv,
        refs(vec![("ownerMachine", vec![machine_ref(st, &q.machine)])]),
    )
}

/// A Connection element.
pub fn connection(c: &SimConnection) -> Value {
    let mut fields = vec![
        (
            "elementDisplayName",
            s(format!("10.0.0.1:49152 > {}:443", c.remote_ip)),
        ),
        ("remoteAddressCanonicalString", s(&c.remote_ip)),
    ];
    if let Some(d) = &c.domain {
        fields.push(("domainName", s(d)));
    }
    element(&c.guid, simple(fields), json!({}))
}

/// A Machine element.
pub fn machine(m: &SimMachine) -> Value {
    let sv = simple(vec![
        ("elementDisplayName", s(&m.name)),
        ("pylumId", known(&m.pylum_id)),
        ("isActiveProbeConnected", s(m.online)),
        ("isIsolated", s(m.isolated)),
        ("osType", s(&m.os)),
    ]);
    element(&m.guid, sv, json!({}))
}

/// A named element with no other fields (User, RegistryEntry).
pub fn named(guid: &str, name: &str) -> Value {
    element(
        guid,
        simple(vec![("elementDisplayName", s(name))]),
        json!({}),
    )
}

/// The machines of an inbox or mmng/v2 model; only mmng/v2 names the pylumId (§2.3, §2.4).
fn machines_model(st: &SimState, m: &SimMalop, with_pylum_id: bool) -> Vec<Value> {
    m.machines
        .iter()
        .filter_map(|g| st.machine(g))
        .map(|x| {
            let mut model = json!({"@class": ".MachineInboxModel", "guid": x.guid,
                "displayName": x.name, "osType": x.os, "connected": x.online,
                "isolated": x.isolated, "lastConnected": st.clock_ms});
            if with_pylum_id {
                model["pylumId"] = json!(x.pylum_id);
            }
            model
        })
        .collect()
}

fn users_model(m: &SimMalop) -> Vec<Value> {
    m.users
        .iter()
        .map(|(g, n)| {
            json!({"guid": g, "displayName": n, "admin": false,
            "localSystem": false, "domainUser": true})
        })
        .collect()
}

/// A `detection/inbox` MalopInboxModel.
pub(crate) fn inbox_model(st: &SimState, m: &SimMalop) -> Value {
    let hash = m
        .root_causes
        .iter()
        .find_map(|c| c.hashes.first())
        .cloned()
        .unwrap_or_default();
    json!({"@class": ".MalopInboxModel", "guid": m.guid, "displayName": m.name,
        "rootCauseElementType": root_type(m), "primaryRootCauseName": m.name,
        "detectionEngines": ["EDR"], "detectionTypes": m.activity_types,
        "malopDetectionType": m.detection_type, "creationTime": m.creation_time,
        "lastUpdateTime": m.last_update_time, "priority": m.priority,
        "rootCauseElementHashes": hash, "status": inbox_status(m.status),
        "severity": m.priority, "machines": machines_model(st, m, false),
        "users": users_model(m), "labels": [], "decisionStatuses": [], "malopCloseTime": null, "closerName": null,
        "edr": true, "closed": m.status == ManagementStatus::Closed})
}

/// An `mmng/v2/malops` model.
pub(crate) fn mmng_model(st: &SimState, m: &SimMalop) -> Value {
    let hashes: Vec<&String> = m.root_causes.iter().flat_map(|c| &c.hashes).collect();
    json!({"guid": m.guid, "displayName": m.name, "rootCauseElementType": root_type(m),
        "primaryRootCauseName": m.name, "detectionEngines": ["EDR"],
        "detectionTypes": m.activity_types, "malopDetectionType": m.detection_type,
        "creationTime": m.creation_time, "lastUpdateTime": m.last_update_time,
        "metadataUpdateTime": m.last_update_time, "priority": m.priority,
        "rootCauseElementHashes": hashes, "status": inbox_status(m.status),
        "investigationStatus": "Pending", "severity": m.priority,
        "machines": machines_model(st, m, true), "users": users_model(m), "labels": [],
        "mitreTactics": [], "mitreTechniques": [], "iocs": [], "groups": [], "isEdr": true})
}

fn root_type(m: &SimMalop) -> &'static str {
    super::data::root_type(m.kind)
}

fn inbox_status(s: ManagementStatus) -> &'static str {
    match s {
        ManagementStatus::Closed => "Closed",
        ManagementStatus::FalsePositive => "Excluded",
        _ => "Active",
    }
}

/// A remediation reply at its current step.
pub fn remediation(r: &SimRemediation) -> Value {
    let log: Vec<Value> = r
        .actions
        .iter()
        .map(|a| {
            let (status, error) = if r.aborted && r.steps < FINAL_STEP {
                (
                    "FAILURE",
                    Some((
                        "Remediation aborted by user".to_owned(),
                        "ABORTED".to_owned(),
                    )),
                )
            } else {
                match (r.steps, &a.error) {
                    // The server validates a request when it takes it: an unknown machine,
                    // target or action fails in the reply to the POST already
                    // (cybereason-api.md §3.1); a sensor problem shows later.
                    (_, Some(e)) if e.1 == "INVALID_ARGUMENT" => ("FAILURE", Some(e.clone())),
                    (0, _) => ("PENDING", None),
                    (1, _) => ("IN_PROGRESS", None),
                    (_, None) => ("SUCCESS", None),
                    (_, Some(e)) => ("FAILURE", Some(e.clone())),
                }
            };
            json!({"machineId": a.machine, "targetId": a.target, "status": status,
                "actionType": a.action, "timestamp": r.end.unwrap_or(r.start),
                "error": error.map(|(m, t)| json!({"message": m, "errorType": t}))})
        })
        .collect();
    json!({"malopId": r.malop_id, "remediationId": r.id, "start": r.start, "end": r.end,
        "initiatingUser": r.initiator, "statusLog": log})
}

/// A sensor of `sensors/query` (the machine's sensor has this `pylum_id`).
pub fn sensor(m: &SimMachine, pylum_id: &str) -> Value {
    json!({"sensorId": format!("5e77883de4b0575ddcf824ef:{pylum_id}"), "pylumId": pylum_id,
        "guid": m.guid, "machineName": m.name, "fqdn": format!("{}.corp.local", m.name.to_ascii_lowercase()),
        "internalIpAddress": m.ip, "externalIpAddress": "203.0.113.10",
        "status": if m.online { "Online" } else { "Offline" }, "isolated": m.isolated,
        "osType": m.os, "groupId": "00000000-0000-0000-0000-000000000000", "groupName": m.group})
}
