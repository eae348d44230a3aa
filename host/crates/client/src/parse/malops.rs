//! Malop lists: `crimes/unified`, `detection/inbox`, `mmng/v2/malops`, and visualsearch elements.

use super::{
    Parsed, VisualAnswer, boolean, check_status, element, envelope_status, kind, malformed, millis,
    object, sv_millis, text,
};
use crate::types::{Element, MalopsPage};
use riposte_domain::{
    ElementGuid, ElementKind, FileItem, Machine, MachineGuid, Malop, MalopId, ManagementStatus,
    Priority, PylumId, RootCause, Suspect, User,
};
use serde_json::{Map, Value};

/// The elements of a visualsearch / crimes/unified envelope, sorted by result key; a partial
/// answer (`PARTIAL_SUCCESS`) is the server's failure.
pub fn visual_elements(body: &[u8]) -> Parsed<Vec<Element>> {
    visual_envelope(body)
        .and_then(VisualAnswer::whole)
        .map(|answer| answer.elements)
}

/// The elements, how many results matched on the server (`data.totalPossibleResults`, when
/// it is a number) and whether the answer is partial.
pub(crate) fn visual_envelope(body: &[u8]) -> Parsed<VisualAnswer> {
    super::typed::visual_envelope(body).unwrap_or_else(|| {
        let map = object(body)?;
        let partial = envelope_status(
            map.get("status"),
            map.get("message"),
            map.get("errorMessage"),
        )?
        .or_else(|| {
            let terminated = map.get("data").and_then(|d| d.get("queryTerminated"));
            super::cut_short(map.get("failures"), terminated)
        });
        let elements = visual_elements_from_value(body, &map)?;
        let total = map
            .get("data")
            .and_then(|d| d.get("totalPossibleResults"))
            .and_then(Value::as_u64);
        Ok(VisualAnswer {
            elements,
            total,
            partial,
        })
    })
}

/// The elements of `map` (the body, parsed into a `serde_json::Value` tree: slower and
/// larger, but it takes any JSON and says what is wrong with it).
fn visual_elements_from_value(body: &[u8], map: &Map<String, Value>) -> Parsed<Vec<Element>> {
    let data = match map.get("data") {
        Some(Value::Object(d)) => d,
        Some(Value::Null) | None => return Err(malformed(body, "missing object \"data\"")),
        Some(other) => {
            return Err(malformed(
                body,
                format!("\"data\" should be an object, got {}", kind(other)),
            ));
        }
    };
    let results = match data.get("resultIdToElementDataMap") {
        Some(Value::Object(r)) => r,
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(other) => {
            return Err(malformed(
                body,
                format!(
                    "resultIdToElementDataMap should be an object, got {}",
                    kind(other)
                ),
            ));
        }
    };
    results
        .iter()
        .map(|(key, v)| element(body, key, v))
        .collect()
}

/// `crimes/unified`: one Malop per result element, oldest update first; a partial answer
/// (`PARTIAL_SUCCESS`) is the server's failure (a Malop it lacks is not known to be absent).
pub fn crimes_unified(body: &[u8], kind: ElementKind) -> Parsed<Vec<Malop>> {
    let page = crimes_unified_page(body, kind)?;
    match page.partial {
        Some(message) => Err(super::partial_failure(message)),
        None => Ok(page.malops),
    }
}

/// `crimes/unified` with how many Malops matched (`totalPossibleResults`; the number
/// returned when absent): more than returned means the answer hit the result limit.
pub fn crimes_unified_page(body: &[u8], kind: ElementKind) -> Parsed<MalopsPage> {
    let answer = visual_envelope(body)?;
    let mut unreadable = UnreadableTimes::default();
    let mut malops = answer
        .elements
        .iter()
        .map(|e| malop_from_element(body, e, kind, &mut unreadable))
        .collect::<Parsed<Vec<_>>>()?;
    unreadable.warn();
    malops.sort_by(|a, b| (a.last_update_time, &a.id).cmp(&(b.last_update_time, &b.id)));
    let total_hits = answer.total.unwrap_or(0).max(malops.len() as u64);
    // Machines to read with a query of their own: those cut at `perFeatureLimit`, and all
    // of a Malop whose element leaves `affectedMachines` out (`elementValues: {}` is seen,
    // §2.2 of the API notes): no list is not "no machines". 0 stands for "not said".
    let machines_cut = answer
        .elements
        .iter()
        .filter_map(|e| {
            let total = match e.refs_cut("affectedMachines") {
                Some(total) => total,
                None if !e.has_refs("affectedMachines") => 0,
                None => return None,
            };
            Some((MalopId::new(e.guid.clone()), total))
        })
        .collect();
    Ok(MalopsPage {
        malops,
        total_hits,
        partial: answer.partial,
        machines_cut,
    })
}

fn malop_from_element(
    body: &[u8],
    e: &Element,
    kind: ElementKind,
    unreadable: &mut UnreadableTimes,
) -> Parsed<Malop> {
    // One Malop with an odd time (`""`, `"N/A"`) must not cost the whole listing: its time
    // is read as absent, and the log says so.
    let creation = unreadable.read(body, e, "creationTime").unwrap_or(0);
    let updated = unreadable
        .read(body, e, "malopLastUpdateTime")
        .unwrap_or(creation);
    let machines: Vec<Machine> = e
        .refs("affectedMachines")
        .iter()
        .map(|r| bare_machine(&r.guid, &r.name))
        .collect();
    // Without an investigation query, an element's machine is known only when the Malop has
    // one machine: every suspect and file of it is there.
    let only_machine = match machines.as_slice() {
        [one] => one.guid.clone(),
        _ => MachineGuid::new(""),
    };
    Ok(Malop {
        id: MalopId::new(e.guid.clone()),
        kind,
        display_name: e.first("elementDisplayName").unwrap_or_default().to_owned(),
        detection_type: e.first("detectionType").unwrap_or_default().to_owned(),
        activity_types: e.all("malopActivityTypes").to_vec(),
        management_status: ManagementStatus::from_api(e.first("managementStatus").unwrap_or("")),
        priority: malop_priority(e),
        creation_time: creation,
        last_update_time: updated,
        root_causes: root_causes(e),
        machines,
        suspects: e
            .refs("suspects")
            .iter()
            .map(|r| Suspect {
                guid: ElementGuid::new(r.guid.clone()),
                name: r.name.clone(),
                machine_guid: only_machine.clone(),
                image_sha1: None,
                autorun_keys: Vec::new(),
            })
            .collect(),
        files: e
            .refs("filesToRemediate")
            .iter()
            .map(|r| FileItem {
                guid: ElementGuid::new(r.guid.clone()),
                name: r.name.clone(),
                md5: None,
                sha1: None,
                machine_guid: only_machine.clone(),
            })
            .collect(),
        users: e
            .refs("affectedUsers")
            .iter()
            .map(|r| User {
                guid: ElementGuid::new(r.guid.clone()),
                name: r.name.clone(),
            })
            .collect(),
        ip_addresses: Vec::new(),
        domains: Vec::new(),
        unreadable: Vec::new(),
    })
}

/// The times of one answer's Malops read as absent because they were unreadable: how many,
/// and the first (its Malop, its field and the reason), for one warning per answer rather
/// than one per Malop on every poll.
#[derive(Default)]
struct UnreadableTimes {
    count: usize,
    first: Option<String>,
}

impl UnreadableTimes {
    /// A time in epoch ms, or `None` when absent or unreadable (then counted).
    fn read(&mut self, body: &[u8], e: &Element, field: &str) -> Option<i64> {
        sv_millis(body, e, field).unwrap_or_else(|error| {
            self.count += 1;
            self.first.get_or_insert_with(|| {
                let malop = riposte_domain::bounds::log_safe(&e.guid, 64);
                let error = riposte_domain::bounds::log_safe(&error.to_string(), 256);
                format!("Malop {malop}, {field}: {error}")
            });
            None
        })
    }

    /// The one warning for the answer, if any time was unreadable.
    fn summary(&self) -> Option<String> {
        let first = self.first.as_ref()?;
        Some(format!(
            "crimes/unified: {} Malop time(s) unreadable, read as absent; the first: {first}",
            self.count
        ))
    }

    fn warn(&self) {
        if let Some(summary) = self.summary() {
            tracing::warn!("{summary}");
        }
    }
}

/// The Malop's priority: the element's own `malopPriority` member, where real servers put it
/// (shared/cybereason-api.md §2.2); a `malopPriority` simple value is read when the member is
/// absent or null.
fn malop_priority(e: &Element) -> Priority {
    let value = e
        .malop_priority
        .as_deref()
        .filter(|p| !p.is_empty())
        .or_else(|| e.first("malopPriority"));
    Priority::from_api(value.unwrap_or(""))
}

fn root_causes(e: &Element) -> Vec<RootCause> {
    let (names, types) = (
        e.all("rootCauseElementNames"),
        e.all("rootCauseElementTypes"),
    );
    let hashes = e.all("rootCauseElementHashes");
    names
        .iter()
        .enumerate()
        .map(|(i, name)| RootCause {
            name: name.clone(),
            element_type: types.get(i).cloned().unwrap_or_default(),
            // Hashes are aligned with names; "" stands for a root cause without one.
            hashes: hashes
                .get(i)
                .filter(|h| !h.is_empty())
                .cloned()
                .into_iter()
                .collect(),
        })
        .collect()
}

pub(crate) fn bare_machine(guid: &str, name: &str) -> Machine {
    Machine {
        guid: MachineGuid::new(guid),
        name: name.to_owned(),
        pylum_id: None,
        os: String::new(),
        connected: false,
        isolated: false,
        group: None,
    }
}

/// `detection/inbox`: the `malops` array.
pub fn inbox(body: &[u8]) -> Parsed<Vec<Malop>> {
    let map = object(body)?;
    check_status(&map)?;
    let list = match map.get("malops") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(other) => {
            return Err(malformed(
                body,
                format!("\"malops\" should be an array, got {}", kind(other)),
            ));
        }
    };
    list.iter().map(|m| model_malop(body, m)).collect()
}

/// `mmng/v2/malops`: one page (`data.data`) and `data.totalHits`.
pub fn mmng_page(body: &[u8]) -> Parsed<MalopsPage> {
    let map = object(body)?;
    check_status(&map)?;
    let Some(Value::Object(data)) = map.get("data") else {
        return Err(malformed(body, "missing object \"data\""));
    };
    let total = millis(body, data.get("totalHits"), "totalHits")?
        .ok_or_else(|| malformed(body, "missing \"data.totalHits\""))?;
    let list = match data.get("data") {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(other) => {
            return Err(malformed(
                body,
                format!("\"data.data\" should be an array, got {}", kind(other)),
            ));
        }
    };
    Ok(MalopsPage {
        malops: list
            .iter()
            .map(|m| model_malop(body, m))
            .collect::<Parsed<_>>()?,
        total_hits: total.max(0) as u64,
        partial: None,
        machines_cut: Vec::new(),
    })
}

/// One inbox / mmng v2 Malop model.
fn model_malop(body: &[u8], v: &Value) -> Parsed<Malop> {
    let Value::Object(m) = v else {
        return Err(malformed(
            body,
            format!("a malop should be an object, got {}", kind(v)),
        ));
    };
    let guid = text(m.get("guid")).ok_or_else(|| malformed(body, "a malop has no \"guid\""))?;
    let creation = millis(body, m.get("creationTime"), "creationTime")?.unwrap_or(0);
    let updated = millis(body, m.get("lastUpdateTime"), "lastUpdateTime")?.unwrap_or(creation);
    // `status` (inbox) or `malopStatus` (both named in §2.3); `managementStatus` as in
    // crimes/unified.
    let status = text(m.get("managementStatus"))
        .or_else(|| text(m.get("status")))
        .or_else(|| text(m.get("malopStatus")));
    let kind = match text(m.get("rootCauseElementType")).as_deref() {
        Some("LogonSession") => ElementKind::LogonSession,
        _ => ElementKind::Process,
    };
    Ok(Malop {
        id: MalopId::new(guid),
        kind,
        display_name: text(m.get("displayName")).unwrap_or_default(),
        detection_type: text(m.get("malopDetectionType"))
            .or_else(|| text(m.get("malopType")))
            .unwrap_or_default(),
        activity_types: strings(m.get("detectionTypes")),
        management_status: ManagementStatus::from_api(status.as_deref().unwrap_or("")),
        priority: Priority::from_api(&text(m.get("priority")).unwrap_or_default()),
        creation_time: creation,
        last_update_time: updated,
        root_causes: model_root_cause(m),
        machines: model_machines(body, m)?,
        suspects: Vec::new(),
        files: Vec::new(),
        users: model_users(m),
        ip_addresses: Vec::new(),
        domains: Vec::new(),
        unreadable: Vec::new(),
    })
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(|x| text(Some(x))).collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn model_root_cause(m: &Map<String, Value>) -> Vec<RootCause> {
    let Some(name) = text(m.get("primaryRootCauseName")) else {
        return Vec::new();
    };
    vec![RootCause {
        name,
        element_type: text(m.get("rootCauseElementType")).unwrap_or_default(),
        // A string in detection/inbox, an array in mmng/v2.
        hashes: strings(m.get("rootCauseElementHashes")),
    }]
}

fn model_machines(body: &[u8], m: &Map<String, Value>) -> Parsed<Vec<Machine>> {
    let Some(Value::Array(list)) = m.get("machines") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in list {
        let Some(guid) = text(item.get("guid")) else {
            continue;
        };
        // XS's inbox fixture names machines in the 16-character form (§2.1).
        let guid = MachineGuid::from_api(&guid);
        let mut machine = bare_machine(
            guid.as_str(),
            &text(item.get("displayName")).unwrap_or_default(),
        );
        machine.os = text(item.get("osType")).unwrap_or_default();
        machine.connected = boolean(body, item.get("connected"), "connected")?.unwrap_or(false);
        machine.isolated = boolean(body, item.get("isolated"), "isolated")?.unwrap_or(false);
        machine.pylum_id = text(item.get("pylumId")).map(PylumId::new);
        out.push(machine);
    }
    Ok(out)
}

fn model_users(m: &Map<String, Value>) -> Vec<User> {
    let Some(Value::Array(list)) = m.get("users") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|u| {
            Some(User {
                guid: ElementGuid::new(text(u.get("guid"))?),
                name: text(u.get("displayName")).unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Parsed, check_status, object, typed};
    use crate::types::Element;

    /// The `Value` path, a partial answer refused.
    fn visual_elements_from_value(body: &[u8]) -> Parsed<Vec<Element>> {
        let map = object(body)?;
        check_status(&map)?;
        super::visual_elements_from_value(body, &map)
    }

    const UNIFIED: &str = r#"{"status":"SUCCESS","message":"","data":{"resultIdToElementDataMap":{
        "11.-43":{"simpleValues":{"elementDisplayName":{"totalValues":1,"values":["wcry.exe"]},
            "creationTime":{"totalValues":1,"values":[1659517940167]},
            "isBlocked":{"values":[false, null, ["nested"], {"o": 1}, 1.5e3]},
            "empty":{"totalValues":0},"nullValues":{"values":null}},
          "elementValues":{"affectedMachines":{"totalValues":2,"elementValues":[
            {"elementType":"Machine","guid":"-18.11","name":"desktop-1","hasSuspicions":true},
            {"elementType":"Machine","name":"no guid"},
            {"guid":7}]},
            "noList":{"totalValues":0}},
          "guidString":"11.-43","suspicions":{"a":{"b":[1,2,3]}},"filterData":{"x":"y"}},
        "11.7":{"simpleValues":{},"elementValues":{},"guidString":null},
        "11.7":{"simpleValues":{"name":{"values":["last wins"]}}},
        "11.9":{}},
      "suspicionsMap":{},"totalPossibleResults":3},"hidePartialSuccess":false}"#;

    /// The fast path gives what the `Value` path gives, whenever it does not give up.
    fn agrees(body: &[u8]) -> bool {
        match typed::visual_elements(body) {
            Some(fast) => {
                assert_eq!(
                    fast,
                    visual_elements_from_value(body),
                    "on {:?}",
                    String::from_utf8_lossy(body)
                );
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_fast_path_takes_well_formed_envelopes_and_failures() {
        assert!(agrees(UNIFIED.as_bytes()));
        let elements = typed::visual_elements(UNIFIED.as_bytes()).unwrap().unwrap();
        assert_eq!(elements.len(), 3);
        assert_eq!(elements[1].first("name"), Some("last wins"));
        assert_eq!(elements[0].all("isBlocked"), ["false", "1500.0"]);
        assert_eq!(elements[0].refs("affectedMachines").len(), 2);
        for body in [
            r#"{"status":"FAILURE","message":"query timed out","data":null}"#,
            r#"{"status":"SUCCESS","errorMessage":"no license","data":{}}"#,
            r#"{"data":{"resultIdToElementDataMap":null}}"#,
            r#"{"data":{}}"#,
        ] {
            assert!(agrees(body.as_bytes()), "the fast path gave up on {body}");
        }
    }

    #[test]
    fn where_it_gives_up_the_value_path_words_the_error() {
        for body in [
            "",
            "[1, 2]",
            r#"{"data": null}"#,
            r#"{"data": []}"#,
            r#"{"data":{"resultIdToElementDataMap":[]}}"#,
            r#"{"data":{"resultIdToElementDataMap":{"1.2":[]}}}"#,
        ] {
            assert!(typed::visual_elements(body.as_bytes()).is_none(), "{body}");
            assert!(
                visual_elements_from_value(body.as_bytes()).is_err(),
                "{body}"
            );
        }
        // The `Value` path ignores simpleValues that are not an object; the fast path leaves
        // such bodies to it.
        let odd =
            r#"{"data":{"resultIdToElementDataMap":{"1.2":{"simpleValues":[{"values":["x"]}]}}}}"#;
        assert!(typed::visual_elements(odd.as_bytes()).is_none());
        let elements = visual_elements_from_value(odd.as_bytes()).expect("tolerated");
        assert!(elements[0].simple.is_empty());
    }

    #[test]
    fn skipped_fields_are_checked_like_the_value_path_checks_them() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let bodies: Vec<Vec<u8>> = vec![
            br#"{"suspicionsMap":"\ud800","data":{}}"#.to_vec(),
            [
                &br#"{"suspicionsMap":""#[..],
                b"\xff\xfe",
                br#"","data":{}}"#,
            ]
            .concat(),
            br#"{"totalPossibleResults":1e400,"data":{}}"#.to_vec(),
            format!(r#"{{"filterData":{deep},"data":{{}}}}"#).into_bytes(),
            br#"{"data":{"resultIdToElementDataMap":{"1.2":{"filterData":{"x":1e400}}}}}"#.to_vec(),
        ];
        for body in &bodies {
            assert!(
                visual_elements_from_value(body).is_err(),
                "the Value path rejects {:?}",
                String::from_utf8_lossy(body)
            );
            agrees(body);
        }
        let fine = br#"{"suspicionsMap":{"a":["\u00e9",-1,2.5,true,null]},"data":{}}"#;
        assert!(agrees(fine), "a valid skipped field keeps the fast path");
    }

    #[test]
    fn truncated_and_mutated_bodies_agree_with_the_value_path() {
        let body = UNIFIED.as_bytes();
        for cut in 0..body.len() {
            agrees(&body[..cut]);
        }
        let swaps: [&[u8]; 8] = [
            b"null", b"[]", b"{}", b"\"s\"", b"7", b"true", b"[{}]", b"[[]]",
        ];
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut taken = 0;
        for _ in 0..4000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Replace the JSON value that starts after a random ':' with another type.
            let colons: Vec<usize> = body
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b':')
                .map(|(i, _)| i)
                .collect();
            let at = colons[(state % colons.len() as u64) as usize] + 1;
            let end = value_end(body, at);
            let swap = swaps[((state >> 32) % swaps.len() as u64) as usize];
            let mutated = [&body[..at], swap, &body[end..]].concat();
            if agrees(&mutated) {
                taken += 1;
            }
        }
        assert!(taken > 100, "the fast path handled only {taken} mutations");
    }

    /// Where the JSON value starting at `start` ends (good enough for the sample above).
    fn value_end(body: &[u8], start: usize) -> usize {
        let mut depth = 0i32;
        let mut in_string = false;
        let mut i = start;
        while i < body.len() {
            let b = body[i];
            if in_string {
                if b == b'\\' {
                    i += 1;
                } else if b == b'"' {
                    in_string = false;
                    if depth == 0 {
                        return i + 1;
                    }
                }
            } else {
                match b {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => return i,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    b',' if depth == 0 => return i,
                    _ => {}
                }
            }
            i += 1;
        }
        body.len()
    }

    /// Unreadable times are counted over the whole answer for one warning naming the first,
    /// not one warning per Malop on every poll.
    #[test]
    fn unreadable_times_make_one_warning_per_answer() {
        let body = br#"{"status":"SUCCESS","data":{"resultIdToElementDataMap":{
            "11.1":{"simpleValues":{"creationTime":{"values":["yesterday"]},"malopLastUpdateTime":{"values":["N/A"]}}},
            "11.2":{"simpleValues":{"creationTime":{"values":["1700000000000"]},"malopLastUpdateTime":{"values":["soon"]}}},
            "11.3":{"simpleValues":{"malopLastUpdateTime":{"values":["1700000000001"]}}}}}}"#;
        let answer = super::visual_envelope(body).unwrap();
        let mut unreadable = super::UnreadableTimes::default();
        for e in &answer.elements {
            super::malop_from_element(body, e, super::ElementKind::Process, &mut unreadable)
                .unwrap();
        }
        assert_eq!(unreadable.count, 3);
        let summary = unreadable.summary().unwrap();
        assert!(
            summary.starts_with("crimes/unified: 3 Malop time(s) unreadable")
                && summary.contains("the first: Malop 11.1, creationTime"),
            "{summary}"
        );
        assert!(super::UnreadableTimes::default().summary().is_none());
    }
}

/// One test per field location of host/docs/CLIENT.md's table: each field is read where
/// shared/cybereason-api.md says real servers put it.
#[cfg(test)]
mod field_locations {
    use super::{crimes_unified, crimes_unified_page, inbox, mmng_page};
    use riposte_domain::{ElementKind, ManagementStatus, Priority};
    use serde_json::{Value, json};

    /// A crimes/unified envelope around one Malop element with these simple values, element
    /// values and element members.
    fn unified(simple: Value, elements: Value, members: Value) -> Vec<u8> {
        let as_simple: serde_json::Map<String, Value> = simple
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), json!({"totalValues": 1, "values": v})))
            .collect();
        let as_refs: serde_json::Map<String, Value> = elements
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), json!({"totalValues": 1, "elementValues": v})))
            .collect();
        let mut element = json!({"simpleValues": as_simple, "elementValues": as_refs,
                                 "guidString": "11.-7780537507363356527"});
        for (k, v) in members.as_object().unwrap() {
            element[k] = v.clone();
        }
        json!({"status": "SUCCESS", "data": {"resultIdToElementDataMap":
            {"11.-7780537507363356527": element}, "totalPossibleResults": 1}})
        .to_string()
        .into_bytes()
    }

    fn one(body: &[u8]) -> riposte_domain::Malop {
        crimes_unified(body, ElementKind::Process)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn priority_is_the_elements_own_member() {
        // §2.2: `malopPriority` is a member of each element, not a simple value.
        let m = one(&unified(
            json!({}),
            json!({}),
            json!({"malopPriority": "HIGH"}),
        ));
        assert_eq!(m.priority, Priority::High);
        let null = one(&unified(
            json!({}),
            json!({}),
            json!({"malopPriority": null}),
        ));
        assert_eq!(null.priority, Priority::Unknown);
        let simple = one(&unified(
            json!({"malopPriority": ["LOW"]}),
            json!({}),
            json!({}),
        ));
        assert_eq!(
            simple.priority,
            Priority::Low,
            "the simple value when the member is absent"
        );
    }

    #[test]
    fn simple_values_are_read_as_strings() {
        // §2.2: scalar simpleValues are strings (epoch ms and booleans too).
        let m = one(&unified(
            json!({"elementDisplayName": ["wcry.exe"], "detectionType": ["RANSOMWARE"],
                   "malopActivityTypes": ["RANSOMWARE", "MALICIOUS_INFECTION"],
                   "creationTime": ["1659517940167"], "malopLastUpdateTime": ["1659517990000"],
                   "managementStatus": ["TODO"], "isBlocked": ["false"],
                   "rootCauseElementNames": ["wcry.exe", "svc"],
                   "rootCauseElementTypes": ["File", "Process"],
                   "rootCauseElementHashes": ["e1112174b6dcc6bed54e0e34d8a7272715e73d74", ""]}),
            json!({}),
            json!({}),
        ));
        assert_eq!(m.id.as_str(), "11.-7780537507363356527");
        assert_eq!(
            (m.display_name.as_str(), m.detection_type.as_str()),
            ("wcry.exe", "RANSOMWARE")
        );
        assert_eq!(m.activity_types, ["RANSOMWARE", "MALICIOUS_INFECTION"]);
        assert_eq!(
            (m.creation_time, m.last_update_time),
            (1659517940167, 1659517990000)
        );
        assert_eq!(m.management_status, ManagementStatus::Todo);
        assert_eq!(m.root_causes.len(), 2);
        assert_eq!(
            m.root_causes[0].hashes,
            ["e1112174b6dcc6bed54e0e34d8a7272715e73d74"]
        );
        assert!(
            m.root_causes[1].hashes.is_empty(),
            "\"\" aligns a root cause without a hash"
        );
        assert_eq!(m.root_causes[1].element_type, "Process");
    }

    #[test]
    fn machines_users_suspects_and_files_are_element_values() {
        // §2.2: affectedMachines, affectedUsers, suspects, filesToRemediate.
        let refs = |t: &str, g: &str, n: &str| json!([{"elementType": t, "guid": g, "name": n}]);
        let m = one(&unified(
            json!({}),
            json!({"affectedMachines": refs("Machine", "-1845090846.1198775089551518743", "desktop-1"),
                   "affectedUsers": refs("User", "0.923977340742223688", "CORP\\jdoe"),
                   "suspects": refs("Process", "-1845090846.-1424333057657783286", "wcry.exe"),
                   "filesToRemediate": refs("File", "-1845090846.77", "wcry.exe")}),
            json!({}),
        ));
        assert_eq!(
            m.machines[0].guid.as_str(),
            "-1845090846.1198775089551518743"
        );
        assert_eq!(m.machines[0].name, "desktop-1");
        assert_eq!(m.users[0].name, "CORP\\jdoe");
        assert_eq!(
            m.suspects[0].guid.as_str(),
            "-1845090846.-1424333057657783286"
        );
        assert_eq!(
            m.suspects[0].machine_guid, m.machines[0].guid,
            "one machine: every suspect is on it"
        );
        assert_eq!(m.files[0].machine_guid, m.machines[0].guid);
        assert!(
            m.files[0].sha1.is_none(),
            "hashes come from an investigation query"
        );
    }

    #[test]
    fn with_several_machines_a_suspects_machine_is_not_guessed() {
        let machines = json!([{"elementType": "Machine", "guid": "1.1", "name": "a"},
                              {"elementType": "Machine", "guid": "2.2", "name": "b"}]);
        let suspects = json!([{"elementType": "Process", "guid": "1.9", "name": "x.exe"}]);
        let m = one(&unified(
            json!({}),
            json!({"affectedMachines": machines, "suspects": suspects}),
            json!({}),
        ));
        assert_eq!(m.suspects[0].machine_guid.as_str(), "");
    }

    #[test]
    fn total_possible_results_tells_an_answer_cut_by_the_limit() {
        // §6: no paging, only a result limit; `totalPossibleResults` counts the matches.
        let mut body: Value =
            serde_json::from_slice(&unified(json!({}), json!({}), json!({}))).unwrap();
        body["data"]["totalPossibleResults"] = json!(10_500);
        let page = crimes_unified_page(body.to_string().as_bytes(), ElementKind::Process).unwrap();
        assert_eq!((page.malops.len(), page.total_hits), (1, 10_500));
    }

    #[test]
    fn a_partial_answer_is_kept_for_a_listing_and_refused_for_a_query() {
        // §5.3: PARTIAL_SUCCESS when a detection server did not answer.
        let mut body: Value =
            serde_json::from_slice(&unified(json!({}), json!({}), json!({}))).unwrap();
        body["status"] = json!("PARTIAL_SUCCESS");
        body["message"] = json!("server-2 offline");
        body["errorMessage"] = json!("server-2");
        let text = body.to_string();
        let page = crimes_unified_page(text.as_bytes(), ElementKind::Process).unwrap();
        assert_eq!(page.partial.as_deref(), Some("server-2 offline"));
        assert_eq!(page.malops.len(), 1);
        let refused = super::visual_elements(text.as_bytes()).unwrap_err();
        assert!(refused.to_string().contains("PARTIAL_SUCCESS"), "{refused}");
        let by_id = crimes_unified(text.as_bytes(), ElementKind::Process).unwrap_err();
        assert!(by_id.to_string().contains("PARTIAL_SUCCESS"), "{by_id}");
        // The `Value` path reads the status the same way.
        let status =
            |s: &str| super::super::envelope_status(Some(&json!(s)), Some(&json!("m")), None);
        assert_eq!(status("partial_success").unwrap().as_deref(), Some("m"));
        assert_eq!(status("SUCCESS").unwrap(), None);
        assert!(status("FAILURE").is_err());
    }

    #[test]
    fn inbox_fields_and_its_status_names() {
        // §2.3: numbers for times, `status` or `malopStatus`, machines with the 16-character
        // guid form (XS) turned dotted, `rootCauseElementHashes` as one string.
        let body = json!({"malops": [{"@class": ".MalopInboxModel", "guid": "AAAA0ws7O-MUgDmB",
            "displayName": "x", "rootCauseElementType": "Process", "primaryRootCauseName": "x.exe",
            "detectionTypes": ["RANSOMWARE"], "malopDetectionType": "KNOWN_MALWARE",
            "creationTime": 1, "lastUpdateTime": 2, "priority": "MEDIUM",
            "rootCauseElementHashes": "e1112174b6dcc6bed54e0e34d8a7272715e73d74",
            "malopStatus": "Remediated",
            "machines": [{"guid": "kxwWqBCi55eyTiwX", "displayName": "desktop-j60ivd0",
                          "osType": "WINDOWS", "connected": true, "isolated": false}]}]});
        let m = inbox(body.to_string().as_bytes()).unwrap().remove(0);
        assert_eq!(
            m.id.as_str(),
            "AAAA0ws7O-MUgDmB",
            "a Malop id stays as sent"
        );
        assert_eq!(m.priority, Priority::Medium);
        assert_eq!(
            m.management_status,
            ManagementStatus::Closed,
            "Remediated maps to CLOSED (§5.2)"
        );
        assert_eq!(m.detection_type, "KNOWN_MALWARE");
        assert_eq!(
            m.machines[0].guid.as_str(),
            "-1826875736.1198775089551518743"
        );
        assert!(m.machines[0].connected && m.machines[0].pylum_id.is_none());
        assert_eq!(m.root_causes[0].hashes.len(), 1);
    }

    #[test]
    fn mmng_fields_hashes_array_and_pylum_id() {
        // §2.4: `rootCauseElementHashes` is an array, machines carry `pylumId`.
        let body = json!({"status": "SUCCESS", "data": {"totalHits": 1, "data": [{
            "guid": "11.5", "displayName": "y", "rootCauseElementType": "LogonSession",
            "primaryRootCauseName": "y", "malopType": "CUSTOM_RULE", "creationTime": 1,
            "lastUpdateTime": 3, "priority": "LOW", "status": "Active",
            "rootCauseElementHashes": ["a", "b"],
            "machines": [{"guid": "1.2", "displayName": "m", "pylumId": "PYLUMCLIENT_X_M_0A"}]}]}});
        let page = mmng_page(body.to_string().as_bytes()).unwrap();
        let m = &page.malops[0];
        assert_eq!(m.kind, ElementKind::LogonSession);
        assert_eq!(m.detection_type, "CUSTOM_RULE");
        assert_eq!(m.management_status, ManagementStatus::Open, "Active");
        assert_eq!(m.root_causes[0].hashes, ["a", "b"]);
        assert_eq!(
            m.machines[0].pylum_id.as_ref().unwrap().as_str(),
            "PYLUMCLIENT_X_M_0A"
        );
    }
}
