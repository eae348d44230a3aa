//! The audit trail on real files: the chain, reopening, every kind of tampering, redaction,
//! filtering and concurrent writers; the keyed chain (`keyed`); the SIEM export (`export`).

#[path = "audit_chain/export.rs"]
mod export;
#[path = "audit_chain/keyed.rs"]
mod keyed;

use riposte_audit::{
    Anchor, AuditLog, AuditShowArgs, AuditSink, AuditVerifyArgs, Call, DecisionKind, Entry, Error,
    Filter, FsyncPolicy, GENESIS, HeadFileCheck, InvocationId, Redacted, Tamper, VerifyOptions,
    head_path, run_show, run_verify, show, verify, verify_reader, verify_with,
};
use riposte_domain::{ActionRequest, MachineGuid, MalopId, Operation, PluginName, Sha256Digest};
use riposte_policy::{Decision, DenyReason};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const T0: i64 = 1_700_000_000_000;

fn entry(i: u64) -> Entry {
    let plugin = if i.is_multiple_of(2) { "even" } else { "odd" };
    let mut e = Entry::new(T0 + i as i64, Operation::Isolate);
    e.plugin = Some(PluginName::new(plugin));
    e.plugin_digest = Some(Sha256Digest::of(plugin.as_bytes()));
    e.invocation = Some(InvocationId::new(format!("inv-{i}")));
    e.malop = Some(MalopId::new(format!("11.-{}", i % 3)));
    e.input_digest = Some(Sha256Digest::of(&i.to_le_bytes()));
    e.arguments = Redacted::from_serialize(&ActionRequest::Isolate {
        malop_id: Some(MalopId::new(format!("11.-{}", i % 3))),
        machines: vec![MachineGuid::new(format!("m{i}"))],
    })
    .unwrap();
    let decision = if i % 4 == 3 {
        Decision::Deny(DenyReason::NotGranted {
            operation: Operation::Isolate,
            kind: None,
        })
    } else {
        Decision::Allow { charges: vec![] }
    };
    e.decision = Some(decision.to_record());
    e.result = Redacted::from_value(serde_json::json!({"disposition": "submitted"}));
    e.duration_us = 100 + i;
    e
}

/// A log of `n` records in a temp dir.
fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit").join("riposte-audit.jsonl");
    let mut log = AuditLog::open(&path, FsyncPolicy::Never).unwrap();
    for i in 1..=n {
        log.append(&entry(i)).unwrap();
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

/// The first bad record verify names: (line, seq, problem).
fn tampered(result: Result<riposte_audit::VerifyReport, Error>) -> (u64, Option<u64>, Tamper) {
    match result {
        Err(Error::Tampered {
            line, seq, problem, ..
        }) => (line, seq, *problem),
        Err(other) => panic!("expected tampering, got {other}"),
        Ok(report) => panic!("expected tampering, verify passed: {report}"),
    }
}

fn no_head() -> VerifyOptions {
    VerifyOptions {
        anchor: None,
        head_file: false,
        key: None,
    }
}

#[test]
fn an_untouched_log_verifies() {
    let (_dir, path) = log_with(10);
    let report = verify(&path).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(report.head.unwrap().seq, 10);
    assert_eq!(report.head_file, HeadFileCheck::Matches);
    assert!(report.to_string().starts_with("ok: 10 records"), "{report}");
    let first: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    assert_eq!(first["prev"], GENESIS.to_hex());
    assert_eq!(first["seq"], 1);
}

#[test]
fn an_empty_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    drop(AuditLog::open(&path, FsyncPolicy::EveryRecord).unwrap());
    let report = verify(&path).unwrap();
    assert_eq!(report.records, 0);
    assert_eq!(report.head, None);
}

#[test]
fn reopening_resumes_the_chain() {
    let (_dir, path) = log_with(3);
    let third = verify(&path).unwrap().head.unwrap();
    let mut log = AuditLog::open(&path, FsyncPolicy::EveryRecord).unwrap();
    assert_eq!(log.head(), Some(third));
    let fourth = log.append(&entry(4)).unwrap();
    assert_eq!(fourth.seq, 4);
    log.append(&entry(5)).unwrap();
    drop(log);
    let report = verify(&path).unwrap();
    assert_eq!(report.records, 5);
    let records: Vec<_> = show(&path, Filter::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records[3].prev, third.hash);
    assert_eq!(records[3].hash, fourth.hash);
}

#[test]
fn an_edit_is_caught_at_the_edited_record() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"m3\"", "\"m9\"");
    rewrite(&path, &l);
    let (line, seq, problem) = tampered(verify(&path));
    assert_eq!((line, seq), (3, Some(3)));
    assert!(matches!(problem, Tamper::HashMismatch { .. }), "{problem}");
    let err = verify(&path).unwrap_err().to_string();
    assert!(
        err.contains("line 3 (seq 3): the record was modified"),
        "{err}"
    );
}

#[test]
fn an_edit_with_a_recomputed_hash_is_caught_at_the_next_record() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    // Forge record 3 consistently: edit it and recompute its own hash.
    let edited = l[2].replace("\"m3\"", "\"m9\"");
    let cut = edited.rfind(",\"hash\":\"").unwrap();
    let body = format!("{}}}", &edited[..cut]);
    let hash = Sha256Digest::of(body.as_bytes());
    l[2] = format!("{},\"hash\":\"{}\"}}", &edited[..cut], hash);
    rewrite(&path, &l);
    let (line, seq, problem) = tampered(verify(&path));
    assert_eq!((line, seq), (4, Some(4)));
    assert!(matches!(problem, Tamper::BrokenChain { .. }), "{problem}");
}

#[test]
fn a_deletion_is_caught() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    l.remove(2);
    rewrite(&path, &l);
    let (line, seq, problem) = tampered(verify(&path));
    assert_eq!((line, seq), (3, Some(4)));
    assert_eq!(
        problem,
        Tamper::SeqOutOfOrder {
            expected: 3,
            found: 4
        }
    );
    assert!(
        problem.to_string().contains("record 3 was deleted"),
        "{problem}"
    );
}

#[test]
fn a_reordering_is_caught() {
    let (_dir, path) = log_with(6);
    let mut l = lines(&path);
    l.swap(1, 2);
    rewrite(&path, &l);
    let (line, seq, problem) = tampered(verify(&path));
    assert_eq!((line, seq), (2, Some(3)));
    assert!(matches!(
        problem,
        Tamper::SeqOutOfOrder {
            expected: 2,
            found: 3
        }
    ));
}

#[test]
fn a_truncation_mid_record_is_caught() {
    let (_dir, path) = log_with(6);
    let text = std::fs::read(&path).unwrap();
    std::fs::write(&path, &text[..text.len() - 40]).unwrap();
    let (line, seq, problem) = tampered(verify(&path));
    assert_eq!((line, seq), (6, Some(6)));
    assert_eq!(problem, Tamper::Incomplete);
}

#[test]
fn deleting_trailing_records_is_caught_by_the_head_file_or_an_anchor() {
    let (_dir, path) = log_with(6);
    let anchor = verify(&path).unwrap().head.unwrap();
    let mut l = lines(&path);
    l.truncate(4);
    rewrite(&path, &l);

    let (line, seq, problem) = tampered(verify(&path));
    assert_eq!((line, seq), (5, Some(5)));
    assert_eq!(
        problem,
        Tamper::Truncated {
            last: 4,
            expected: 6,
            source: "head file"
        }
    );

    // The limit of a bare chain: without the head file or an anchor, this is undetectable.
    let report = verify_with(&path, &no_head()).unwrap();
    assert_eq!(report.records, 4);
    assert_eq!(report.head_file, HeadFileCheck::NotChecked);

    // An anchor kept elsewhere catches it.
    let (_, _, problem) = tampered(verify_with(
        &path,
        &VerifyOptions {
            anchor: Some(Anchor {
                seq: anchor.seq,
                hash: anchor.hash,
            }),
            head_file: false,
            key: None,
        },
    ));
    assert!(matches!(
        problem,
        Tamper::Truncated {
            source: "anchor",
            ..
        }
    ));
}

#[test]
fn an_anchor_must_match_its_record() {
    let (_dir, path) = log_with(4);
    let (_, _, problem) = tampered(verify_with(
        &path,
        &VerifyOptions {
            anchor: Some(Anchor {
                seq: 2,
                hash: Sha256Digest::of(b"other"),
            }),
            head_file: true,
            key: None,
        },
    ));
    assert!(matches!(
        problem,
        Tamper::HeadMismatch {
            source: "anchor",
            ..
        }
    ));
}

#[test]
fn open_refuses_a_corrupt_or_truncated_tail() {
    let (_dir, path) = log_with(4);
    let text = std::fs::read(&path).unwrap();

    std::fs::write(&path, &text[..text.len() - 10]).unwrap();
    let err = AuditLog::open(&path, FsyncPolicy::EveryRecord).unwrap_err();
    assert!(matches!(err, Error::CorruptTail { line: 4, .. }), "{err}");
    assert!(err.to_string().contains("incomplete"), "{err}");

    // A cleanly deleted last record: the head file still names seq 4.
    let mut l: Vec<String> = String::from_utf8(text.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    l.pop();
    rewrite(&path, &l);
    let err = AuditLog::open(&path, FsyncPolicy::EveryRecord).unwrap_err();
    assert!(
        err.to_string()
            .contains("records were deleted from the end"),
        "{err}"
    );

    // A damaged last record.
    std::fs::write(&path, &text).unwrap();
    let mut l = lines(&path);
    l[3] = l[3].replace("\"m4\"", "\"mX\"");
    rewrite(&path, &l);
    let err = AuditLog::open(&path, FsyncPolicy::EveryRecord).unwrap_err();
    assert!(
        err.to_string().contains("the last record is damaged"),
        "{err}"
    );

    // Restored: it opens again.
    std::fs::write(&path, &text).unwrap();
    assert_eq!(
        AuditLog::open(&path, FsyncPolicy::EveryRecord)
            .unwrap()
            .head()
            .unwrap()
            .seq,
        4
    );
}

#[test]
fn secrets_never_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let mut log = AuditLog::open(&path, FsyncPolicy::EveryRecord).unwrap();
    let mut e = Entry::new(T0, Call::event("client:login"));
    e.arguments = Redacted::from_value(serde_json::json!({
        "username": "svc-riposte",
        "password": "hunter2-very-secret",
        "headers": {"Cookie": "JSESSIONID=0123456789ABCDEF"},
    }));
    e.result = Redacted::from_value(serde_json::json!({
        "set_cookie": "JSESSIONID=0123456789ABCDEF; Path=/",
        "note": "session JSESSIONID=0123456789ABCDEF renewed",
    }));
    log.append(&e).unwrap();
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("0123456789ABCDEF"), "{text}");
    assert!(text.contains("svc-riposte"));
    assert!(text.contains("[redacted]"));
    verify(&path).unwrap();
}

#[test]
fn show_filters_by_plugin_malop_and_decision() {
    let (_dir, path) = log_with(12);
    let count = |filter: Filter| {
        show(&path, filter)
            .unwrap()
            .inspect(|r| assert!(r.is_ok()))
            .count()
    };
    assert_eq!(count(Filter::default()), 12);
    assert_eq!(
        count(Filter {
            plugin: Some(PluginName::new("odd")),
            ..Filter::default()
        }),
        6
    );
    assert_eq!(
        count(Filter {
            malop: Some(MalopId::new("11.-0")),
            ..Filter::default()
        }),
        4
    );
    let denied: Vec<_> = show(
        &path,
        Filter {
            decision: Some(DecisionKind::Deny),
            ..Filter::default()
        },
    )
    .unwrap()
    .map(|r| r.unwrap().seq)
    .collect();
    assert_eq!(denied, [3, 7, 11]);
    assert_eq!(
        count(Filter {
            plugin: Some(PluginName::new("odd")),
            malop: Some(MalopId::new("11.-1")),
            decision: Some(DecisionKind::Allow),
        }),
        1
    );
}

#[test]
fn concurrent_writers_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let sink = Arc::new(AuditSink::open(&path, FsyncPolicy::Interval(50)).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    sink.append(&entry(t * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    sink.sync().unwrap();
    assert_eq!(sink.head().unwrap().seq, 400);
    drop(sink);
    let report = verify(&path).unwrap();
    assert_eq!(report.records, 400);
    assert_eq!(report.head_file, HeadFileCheck::Matches);
}

/// Two writers on one file (the service and an operator's `approve`, each with its own
/// open log) take turns: each resumes the chain from the other's last record.
#[test]
fn two_logs_on_one_file_extend_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let mut service = AuditLog::open(&path, FsyncPolicy::Batch).unwrap();
    let mut operator = AuditLog::open(&path, FsyncPolicy::EveryRecord).unwrap();
    for i in 0..5 {
        let a = service.append(&entry(2 * i)).unwrap();
        let b = operator.append(&entry(2 * i + 1)).unwrap();
        assert_eq!((a.seq, b.seq), (2 * i + 1, 2 * i + 2));
    }
    // Two records in a row from one writer, then the other again.
    service.append(&entry(10)).unwrap();
    service.append(&entry(11)).unwrap();
    assert_eq!(operator.append(&entry(12)).unwrap().seq, 13);
    service.sync().unwrap();
    drop((service, operator));
    let report = verify(&path).unwrap();
    assert_eq!(report.records, 13);
}

/// Records cut off the end under a running writer are not papered over by its next append
/// (which would link to the new tail and rewrite the head file to match): it refuses, and
/// stays refused.
#[test]
fn a_writer_refuses_to_extend_a_trail_cut_short_under_it() {
    for also_appended in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut log = AuditLog::open(&path, FsyncPolicy::EveryRecord).unwrap();
        for i in 1..=10 {
            log.append(&entry(i)).unwrap();
        }
        let keep: usize = lines(&path)[..7].iter().map(|l| l.len() + 1).sum();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(keep as u64).unwrap();
        if also_appended {
            // Cut, then grown past the old size by a writer that continues from seq 7 (the
            // head file, which names seq 10, removed first).
            std::fs::remove_file(head_path(&path)).unwrap();
            let mut other = AuditLog::open(&path, FsyncPolicy::Never).unwrap();
            for i in 8..=14 {
                other.append(&entry(100 + i)).unwrap();
            }
            drop(other);
            assert!(std::fs::metadata(&path).unwrap().len() > keep as u64);
        }
        let err = log.append(&entry(11)).unwrap_err();
        assert!(
            matches!(err, Error::CorruptTail { .. })
                && err.to_string().contains("deleted from the end"),
            "{err}"
        );
        assert!(matches!(
            log.append(&entry(12)),
            Err(Error::Poisoned { .. })
        ));
    }
}

/// A line longer than any record (here 17 MiB without a newline, as a disk-filling attack
/// would leave) is read no further than the limit: verify, show and the writer say so.
#[test]
fn a_giant_line_is_refused_without_reading_it_whole() {
    let (_dir, path) = log_with(3);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, &vec![b'a'; 17 << 20]).unwrap();
    drop(file);
    let err = verify(&path).unwrap_err();
    assert!(
        matches!(&err, Error::Tampered { line: 4, .. }) && err.to_string().contains("longer than"),
        "{err}"
    );
    let shown: Vec<_> = show(&path, Filter::default()).unwrap().collect();
    assert_eq!(shown.len(), 4);
    assert!(
        shown[3]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("longer than")
    );
    let err = AuditLog::open(&path, FsyncPolicy::Never).unwrap_err();
    assert!(matches!(&err, Error::CorruptTail { .. }), "{err}");
}

#[test]
fn the_memory_sink_uses_the_same_chain() {
    let sink = AuditSink::memory();
    for i in 1..=5 {
        sink.append(&entry(i)).unwrap();
    }
    let text = sink.memory_lines().concat();
    let report = verify_reader(text.as_bytes(), None, None).unwrap();
    assert_eq!(report.records, 5);
    assert_eq!(report.head, sink.head());
}

#[test]
fn the_cli_helpers_report_and_fail() {
    let (_dir, path) = log_with(4);
    let head = verify(&path).unwrap().head.unwrap();
    let mut out = Vec::new();
    run_verify(
        &AuditVerifyArgs {
            files: vec![path.clone()],
            expect_seq: Some(head.seq),
            expect_hash: Some(head.hash.to_hex()),
            no_head_file: false,
            key: None,
            against: None,
            host: None,
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("ok: 4 records"), "{text}");
    assert!(text.contains(&head.hash.to_hex()), "{text}");

    let mut out = Vec::new();
    run_show(
        &AuditShowArgs {
            files: vec![path.clone()],
            plugin: Some("odd".into()),
            malop: None,
            decision: Some(DecisionKind::Deny),
            json: false,
        },
        &mut out,
    )
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("#3 2023-11-14T22:13:20.003Z odd isolate malop=11.-0"),
        "{text}"
    );
    assert!(
        text.contains("deny: denied: operation `isolate` is not granted"),
        "{text}"
    );

    let mut l = lines(&path);
    l.remove(1);
    rewrite(&path, &l);
    let err = run_verify(
        &AuditVerifyArgs {
            files: vec![path.clone()],
            expect_seq: None,
            expect_hash: None,
            no_head_file: false,
            key: None,
            against: None,
            host: None,
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("line 2 (seq 3)"), "{err}");
}

#[test]
fn the_head_file_sits_next_to_the_log() {
    let (_dir, path) = log_with(2);
    let head = std::fs::read_to_string(head_path(&path)).unwrap();
    let r: serde_json::Value = serde_json::from_str(head.trim()).unwrap();
    assert_eq!(r["seq"], 2);
}

#[test]
fn batch_fsync_holds_records_until_a_barrier_and_the_head_never_runs_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("riposte-audit.jsonl");
    let sink = AuditSink::open(&path, FsyncPolicy::Batch).unwrap();
    for i in 1..=5 {
        sink.append(&entry(i)).unwrap();
    }
    // Written (a crash of the process loses nothing), not yet forced to disk; the head file
    // does not name a record that is not on disk yet.
    assert_eq!(lines(&path).len(), 5);
    assert_eq!(sink.unsynced_records(), 5);
    assert_eq!(verify(&path).unwrap().head_file, HeadFileCheck::Absent);

    sink.barrier().unwrap();
    assert_eq!(sink.unsynced_records(), 0);
    let report = verify(&path).unwrap();
    assert_eq!(report.head.unwrap().seq, 5);
    assert_eq!(report.head_file, HeadFileCheck::Matches);

    sink.append(&entry(6)).unwrap();
    assert_eq!(
        verify(&path).unwrap().head_file,
        HeadFileCheck::Behind { seq: 5 },
        "between barriers the head file lags, which verify accepts"
    );
    drop(sink);
    assert_eq!(
        verify(&path).unwrap().head_file,
        HeadFileCheck::Matches,
        "closing the log is a barrier"
    );
}

/// Barriers force nothing under every-record and never; under N they force the records
/// since the last group (the head file, which the export follows, then names the last one).
#[test]
fn barriers_under_the_other_policies() {
    for policy in [
        FsyncPolicy::EveryRecord,
        FsyncPolicy::Interval(3),
        FsyncPolicy::Never,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("riposte-audit.jsonl");
        let sink = AuditSink::open(&path, policy).unwrap();
        for i in 1..=4 {
            sink.append(&entry(i)).unwrap();
        }
        let unsynced = match policy {
            FsyncPolicy::EveryRecord => 0,
            FsyncPolicy::Interval(_) => 1,
            _ => 4,
        };
        assert_eq!(sink.unsynced_records(), unsynced, "{policy:?}");
        // Under N the head file names the last record forced to disk (for the export): the
        // last group's until the barrier forces the rest.
        if policy == FsyncPolicy::Interval(3) {
            let head = verify(&path).unwrap().head_file;
            assert_eq!(head, HeadFileCheck::Behind { seq: 3 });
        }
        sink.barrier().unwrap();
        let after = if policy == FsyncPolicy::Interval(3) {
            0
        } else {
            unsynced
        };
        assert_eq!(sink.unsynced_records(), after, "{policy:?}");
        assert_eq!(
            verify(&path).unwrap().head_file,
            HeadFileCheck::Matches,
            "{policy:?}"
        );
        drop(sink);
        assert_eq!(
            verify(&path).unwrap().head_file,
            HeadFileCheck::Matches,
            "{policy:?}: closing the log forces the rest to disk"
        );
    }
}

#[test]
fn a_head_file_zeroed_by_a_power_cut_names_nothing_and_is_written_again() {
    let (_dir, path) = log_with(3);
    let head = head_path(&path);
    let len = std::fs::metadata(&head).unwrap().len() as usize;
    assert!(len > 0);
    std::fs::write(&head, vec![0u8; len]).unwrap();
    let report = verify(&path).expect("a zeroed head file is not tampering");
    assert_eq!(report.records, 3);
    let mut log = AuditLog::open(&path, FsyncPolicy::EveryRecord).expect("the log opens");
    log.append(&entry(4)).unwrap();
    drop(log);
    let report = verify(&path).unwrap();
    assert_eq!(report.head_file, HeadFileCheck::Matches);
    assert_eq!(report.head.unwrap().seq, 4);
}
