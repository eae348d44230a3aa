//! Property test: arbitrary, truncated and mutated bytes into every response parser never
//! panic, and every rejection says what is wrong.

use riposte_client::parse::{self, Parsed, ResponseError};
use riposte_domain::ElementKind;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

const UNIFIED: &str = r#"{"status":"SUCCESS","message":"","data":{"resultIdToElementDataMap":{"11.-4319097116418812958":{"simpleValues":{"elementDisplayName":{"totalValues":1,"values":["wcry.exe"]},"creationTime":{"totalValues":1,"values":["1659517940167"]},"malopLastUpdateTime":{"totalValues":1,"values":["1659517950167"]},"isBlocked":{"totalValues":1,"values":["false"]},"managementStatus":{"totalValues":1,"values":["OPEN"]}},"elementValues":{"affectedMachines":{"totalValues":1,"elementValues":[{"elementType":"Machine","guid":"-1845090846.1198775089551518743","name":"desktop-1"}]}},"guidString":"11.-4319097116418812958"}}}}"#;
const INBOX: &str = r#"{"malops":[{"guid":"AAAA0ws7O-MUgDmB","displayName":"x.exe","creationTime":1,"lastUpdateTime":2,"machines":[{"guid":"1.2","displayName":"h","connected":true,"isolated":"false"}],"users":[{"guid":"0.1","displayName":"u"}]}],"machineCounterModel":{}}"#;
const MMNG: &str = r#"{"status":"SUCCESS","data":{"pageSize":100,"pages":1,"offset":0,"totalHits":1,"data":[{"guid":"11.5","rootCauseElementHashes":["ab"],"machines":[{"guid":"1.2","pylumId":"PYLUMCLIENT_A_B_C"}]}]}}"#;
const REMEDIATION: &str = r#"{"malopId":"11.-77","remediationId":"248da40a-9ac2-4868-840b-e6d74e79a233","start":1660031986906,"end":1660031987872,"initiatingUser":"e@e.com","statusLog":[{"machineId":"-1.1","targetId":"-1.2","status":"FAILURE","actionType":"KILL_PROCESS","timestamp":1660031987373,"error":{"message":"Failed","errorType":"INVALID_ARGUMENT"}}]}"#;
const ISOLATION: &str = r#"{"PYLUMCLIENT_INTEGRATION_DESKTOP-VG9KE2U_0800273ADC2F":"Succeeded","PYLUMCLIENT_X_Y_Z":"Primed"}"#;
const SENSORS: &str = r#"{"totalResults":1,"hasMoreResults":false,"sensors":[{"pylumId":"PYLUMCLIENT_A_B_C","guid":"1.2","machineName":"b","status":"Online","isolated":false}]}"#;
const CSV: &str =
    "key,reputation,prevent execution,comment,remove\nabc,blacklist,true,\"a, b\",false\n";
const COMMENTS: &str =
    r#"[{"commentId":"c","username":"u","message":"a &lt;b&gt;","timestamp":"5"}]"#;

type Parser = fn(&[u8]) -> Result<(), ResponseError>;

fn ok<T>(r: Parsed<T>) -> Result<(), ResponseError> {
    r.map(|_| ())
}

fn parsers() -> Vec<(&'static str, Parser, &'static str)> {
    vec![
        (
            "crimes_unified",
            |b| ok(parse::crimes_unified(b, ElementKind::Process)),
            UNIFIED,
        ),
        (
            "visual_elements",
            |b| ok(parse::visual_elements(b)),
            UNIFIED,
        ),
        ("inbox", |b| ok(parse::inbox(b)), INBOX),
        ("mmng_page", |b| ok(parse::mmng_page(b)), MMNG),
        ("remediation", |b| ok(parse::remediation(b)), REMEDIATION),
        (
            "remediation_list",
            |b| ok(parse::remediation_list(b)),
            REMEDIATION,
        ),
        ("isolation", |b| ok(parse::isolation(b)), ISOLATION),
        ("sensors_page", |b| ok(parse::sensors_page(b)), SENSORS),
        ("reputation_csv", |b| ok(parse::reputation_csv(b)), CSV),
        (
            "reputation_update",
            |b| ok(parse::reputation_update(b)),
            r#"{"outcome":"success","data":"true"}"#,
        ),
        (
            "status_reply",
            |b| ok(parse::status_reply(b)),
            r#"{"status":"SUCCESS","message":"ok"}"#,
        ),
        ("comments", |b| ok(parse::comments(b)), COMMENTS),
        (
            "comment_reply",
            |b| ok(parse::comment_reply(b)),
            r#"{"commentId":"x"}"#,
        ),
    ]
}

fn check_error(name: &str, e: &ResponseError, input: &[u8]) {
    let text = e.to_string();
    assert!(
        text.len() > 10,
        "{name}: vague error {text:?} for {input:?}"
    );
}

#[test]
fn valid_samples_parse() {
    for (name, parser, sample) in parsers() {
        assert!(
            parser(sample.as_bytes()).is_ok(),
            "{name} rejects its own sample"
        );
    }
}

#[test]
fn every_truncation_is_handled() {
    for (name, parser, sample) in parsers() {
        let bytes = sample.as_bytes();
        for cut in 0..bytes.len() {
            if let Err(e) = parser(&bytes[..cut]) {
                check_error(name, &e, &bytes[..cut]);
            }
        }
    }
    // A JSON body cut short says so.
    let err = parse::crimes_unified(&UNIFIED.as_bytes()[..50], ElementKind::Process).unwrap_err();
    assert!(err.to_string().contains("invalid JSON"), "{err}");
    assert!(err.to_string().contains("EOF"), "{err}");
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = Rng(42);
    for (name, parser, _) in parsers() {
        for _ in 0..3000 {
            let len = (rng.next() % 200) as usize;
            let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Err(e) = parser(&input) {
                check_error(name, &e, &input);
            }
        }
    }
}

#[test]
fn mutated_samples_never_panic() {
    let mut rng = Rng(7);
    let alphabet = b"{}[]\":,0123456789-.truefalsnl \\";
    for (name, parser, sample) in parsers() {
        for _ in 0..3000 {
            let mut bytes = sample.as_bytes().to_vec();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % bytes.len();
                bytes[i] = alphabet[(rng.next() as usize) % alphabet.len()];
            }
            if let Err(e) = parser(&bytes) {
                check_error(name, &e, &bytes);
            }
        }
    }
}

#[test]
fn failure_bodies_become_typed_failures_with_the_message() {
    let body = br#"{"status":"FAILURE","message":"Query limit crossed","data":null}"#;
    match parse::visual_elements(body).unwrap_err() {
        ResponseError::Failure { status, message } => {
            assert_eq!(status, "FAILURE");
            assert_eq!(message, "Query limit crossed");
        }
        other => panic!("{other:?}"),
    }
    let body = br#"{"outcome":"failed","data":"invalid maliciousType"}"#;
    assert!(
        matches!(parse::reputation_update(body), Err(ResponseError::Failure { message, .. }) if message == "invalid maliciousType")
    );
    let body = br#"{"status":"SUCCESS","errorMessage":"no such malop","data":[]}"#;
    assert!(
        matches!(parse::sensors_page(body), Err(ResponseError::Failure { message, .. }) if message == "no such malop")
    );
    let report = parse::remediation(REMEDIATION.as_bytes()).unwrap();
    assert_eq!(
        report.failure().unwrap().error.as_ref().unwrap().message,
        "Failed"
    );
}

#[test]
fn typed_values_and_missing_element_values() {
    let body = br#"{"status":"SUCCESS","data":{"resultIdToElementDataMap":{"11.1":{"simpleValues":{"malopLastUpdateTime":{"values":["1700000000000"]}}}}}}"#;
    let malops = parse::crimes_unified(body, ElementKind::LogonSession).unwrap();
    assert_eq!(malops[0].last_update_time, 1_700_000_000_000);
    assert!(malops[0].machines.is_empty());
    // One Malop with an unreadable time does not cost the others: its time reads as absent.
    let odd = br#"{"status":"SUCCESS","data":{"resultIdToElementDataMap":{
        "11.1":{"simpleValues":{"creationTime":{"values":["yesterday"]},"malopLastUpdateTime":{"values":["N/A"]},"isBlocked":{"values":["maybe"]}}},
        "11.2":{"simpleValues":{"creationTime":{"values":["1700000000000"]},"malopLastUpdateTime":{"values":[""]}}},
        "11.3":{"simpleValues":{"malopLastUpdateTime":{"values":["1700000000001"]}}}}}}"#;
    let malops = parse::crimes_unified(odd, ElementKind::Process).unwrap();
    let times: Vec<(&str, i64, i64)> = malops
        .iter()
        .map(|m| (m.id.as_str(), m.creation_time, m.last_update_time))
        .collect();
    assert_eq!(
        times,
        [
            ("11.1", 0, 0),
            ("11.2", 1_700_000_000_000, 1_700_000_000_000),
            ("11.3", 0, 1_700_000_000_001)
        ]
    );
}

/// A `SUCCESS` answer is partial all the same when detection servers failed to answer or
/// the query was terminated: its Malops are not taken as all there is.
#[test]
fn an_answer_cut_short_is_partial() {
    let answer = |envelope: &str, data: &str| {
        format!(
            r#"{{"status":"SUCCESS","message":""{envelope},"data":{{"resultIdToElementDataMap":{{"11.1":{{"simpleValues":{{}}}}}},"totalPossibleResults":1{data}}}}}"#
        )
    };
    let partial = |body: String| {
        parse::crimes_unified_page(body.as_bytes(), ElementKind::Process)
            .unwrap()
            .partial
    };
    assert_eq!(
        partial(answer(r#","failures":0"#, r#","queryTerminated":false"#)),
        None
    );
    let failed = partial(answer(r#","failures":2"#, "")).unwrap();
    assert!(failed.contains("2 detection server"), "{failed}");
    let stopped = partial(answer("", r#","queryTerminated":true"#)).unwrap();
    assert!(stopped.contains("terminated"), "{stopped}");
}

/// A Malop whose element leaves `affectedMachines` out (`elementValues: {}`) has its machines
/// read with a query of their own; one whose list is empty has none to read.
#[test]
fn a_malop_without_its_machine_list_is_completed() {
    let body = br#"{"status":"SUCCESS","data":{"resultIdToElementDataMap":{
        "11.1":{"simpleValues":{},"elementValues":{}},
        "11.2":{"simpleValues":{},"elementValues":{"affectedMachines":{"totalValues":0,"elementValues":[]}}}}}}"#;
    let page = parse::crimes_unified_page(body, ElementKind::Process).unwrap();
    let cut: Vec<(&str, u64)> = page
        .machines_cut
        .iter()
        .map(|(id, total)| (id.as_str(), *total))
        .collect();
    assert_eq!(cut, [("11.1", 0)]);
}

/// A statusLog of `(machine, target, status, timestamp)` entries.
fn status_log(entries: &[(&str, &str, &str, i64)]) -> riposte_client::RemediationReport {
    let log: Vec<_> = entries
        .iter()
        .map(|(machine, target, status, at)| {
            serde_json::json!({"machineId": machine, "targetId": target, "status": status,
                "actionType": "KILL_PROCESS", "timestamp": at,
                "error": (*status == "FAILURE").then(|| serde_json::json!({"message": format!("{target} failed"), "errorType": "GENERAL"}))})
        })
        .collect();
    let body = serde_json::json!({"malopId": "11.5", "remediationId": "r-1", "statusLog": log});
    parse::remediation(body.to_string().as_bytes()).unwrap()
}

#[test]
fn a_remediation_of_several_items_is_final_only_when_every_item_is() {
    use riposte_domain::RemediationProgress::*;
    // The last entry is one item's success; the other item is still pending.
    let report = status_log(&[("1.1", "1.a", "PENDING", 10), ("1.1", "1.b", "SUCCESS", 12)]);
    assert_eq!(report.status(), Pending);
    assert!(report.failure().is_none());
    // One item in progress and one pending: in progress.
    let report = status_log(&[
        ("1.1", "1.a", "IN_PROGRESS", 10),
        ("1.2", "1.b", "PENDING", 9),
    ]);
    assert_eq!(report.status(), InProgress);
    // An item failed, another succeeded after it: the remediation failed, and says where.
    let report = status_log(&[("1.1", "1.a", "FAILURE", 10), ("1.2", "1.b", "SUCCESS", 12)]);
    assert_eq!(report.status(), Failure);
    assert_eq!(report.failure().unwrap().target_guid.as_str(), "1.a");
    // Each item at its newest entry by timestamp, whatever the log's order: 1.a pending then
    // succeeded, listed newest first.
    let report = status_log(&[
        ("1.1", "1.a", "SUCCESS", 20),
        ("1.1", "1.a", "PENDING", 10),
        ("1.2", "1.b", "SUCCESS", 15),
    ]);
    assert_eq!(report.status(), Success);
    assert_eq!(report.latest().len(), 2);
    // An item that failed and was then retried to success on the server is not a failure.
    let report = status_log(&[("1.1", "1.a", "FAILURE", 10), ("1.1", "1.a", "SUCCESS", 11)]);
    assert_eq!(report.status(), Success);
    assert!(report.failure().is_none());
    // The one-item log (as XS and SP read it): its last entry.
    assert_eq!(
        status_log(&[("1.1", "1.a", "SUCCESS", 1)]).status(),
        Success
    );
    assert_eq!(status_log(&[]).status(), Unknown);
}
