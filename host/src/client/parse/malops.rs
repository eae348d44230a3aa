//! Malop lists: `crimes/unified`, `detection/inbox`, `mmng/v2/malops`, and visualsearch elements.

use super::{
    Parsed, boolean, check_status, element, kind, malformed, millis, object, sv_bool, sv_millis,
    text,
};
use crate::client::types::{Element, MalopsPage};
use crate::domain::{
    ElementGuid, ElementKind, Machine, MachineGuid, Malop, MalopId, ManagementStatus, Priority,
    PylumId, RootCause, User,
};
use serde_json::{Map, Value};

/// The elements of a visualsearch / crimes/unified envelope, sorted by result key.
pub fn visual_elements(body: &[u8]) -> Parsed<Vec<Element>> {
    super::typed::visual_elements(body).unwrap_or_else(|| visual_elements_from_value(body))
}

/// [`visual_elements`] through a `serde_json::Value` tree: slower and larger, but it takes
/// any JSON and says what is wrong with it.
fn visual_elements_from_value(body: &[u8]) -> Parsed<Vec<Element>> {
    let map = object(body)?;
    check_status(&map)?;
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

/// `crimes/unified`: one Malop per result element, oldest update first.
pub fn crimes_unified(body: &[u8], kind: ElementKind) -> Parsed<Vec<Malop>> {
    let mut malops = visual_elements(body)?
        .iter()
        .map(|e| malop_from_element(body, e, kind))
        .collect::<Parsed<Vec<_>>>()?;
    malops.sort_by(|a, b| (a.last_update_time, &a.id).cmp(&(b.last_update_time, &b.id)));
    Ok(malops)
}

fn malop_from_element(body: &[u8], e: &Element, kind: ElementKind) -> Parsed<Malop> {
    let creation = sv_millis(body, e, "creationTime")?.unwrap_or(0);
    let updated = sv_millis(body, e, "malopLastUpdateTime")?.unwrap_or(creation);
    let _ = sv_bool(body, e, "isBlocked")?;
    Ok(Malop {
        id: MalopId::new(e.guid.clone()),
        kind,
        display_name: e.first("elementDisplayName").unwrap_or_default().to_owned(),
        detection_type: e.first("detectionType").unwrap_or_default().to_owned(),
        activity_types: e.all("malopActivityTypes").to_vec(),
        management_status: ManagementStatus::from_api(e.first("managementStatus").unwrap_or("")),
        priority: Priority::from_api(e.first("malopPriority").unwrap_or("")),
        creation_time: creation,
        last_update_time: updated,
        root_causes: root_causes(e),
        machines: e
            .refs("affectedMachines")
            .iter()
            .map(|r| bare_machine(&r.guid, &r.name))
            .collect(),
        suspects: Vec::new(),
        files: Vec::new(),
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
    })
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
    let status = text(m.get("managementStatus")).or_else(|| text(m.get("status")));
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
        let mut machine = bare_machine(&guid, &text(item.get("displayName")).unwrap_or_default());
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
    use super::{super::typed, visual_elements_from_value};

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
}
