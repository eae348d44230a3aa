//! The SIEM export against a collector on loopback: an outage mid-stream, a restart from the
//! cursor, and `verify --against` catching a local rewrite after the export.

use super::keyed::forge;
use super::{entry, lines, rewrite};
use riposte_audit::{
    AuditSink, AuditVerifyArgs, ExportConfig, ExportFormat, ExportHandle, Exporter, FsyncPolicy,
    Record, VerifyOptions, check_against_export, cursor_path, head_path, parse_exported,
    read_cursor, run_verify,
};
use riposte_domain::Sha256Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long any wait may take before the test fails (a bound, never a synchronisation).
const PATIENCE: Duration = Duration::from_secs(60);

/// Every message a collector received, in order of arrival.
#[derive(Clone)]
struct Received {
    messages: Arc<Mutex<Vec<String>>>,
    count: watch::Sender<usize>,
}

impl Received {
    fn new() -> Self {
        Self {
            messages: Arc::default(),
            count: watch::Sender::new(0),
        }
    }

    fn push(&self, message: String) {
        let mut messages = self.messages.lock().unwrap();
        messages.push(message);
        self.count.send_replace(messages.len());
    }

    fn snapshot(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the messages received.
    async fn wait_until(&self, what: &str, done: impl Fn(&[String]) -> bool) {
        let mut count = self.count.subscribe();
        let wait = async {
            loop {
                if done(&self.messages.lock().unwrap()) {
                    return;
                }
                count.changed().await.unwrap();
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("the collector never {what}"));
    }

    /// seq -> the chain hashes received for it (one entry per copy).
    fn by_seq(&self) -> BTreeMap<u64, Vec<String>> {
        let mut out: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for message in self.snapshot() {
            let anchor = parse_exported(&message).expect("an exported audit record");
            out.entry(anchor.seq).or_default().push(anchor.chain_hash);
        }
        out
    }
}

/// Reads one RFC 6587 octet-counted frame; `None` at the end of the stream.
async fn frame(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut count = Vec::new();
    reader.read_until(b' ', &mut count).await.ok()?;
    let len: usize = std::str::from_utf8(count.strip_suffix(b" ")?)
        .ok()?
        .parse()
        .ok()?;
    let mut message = vec![0; len];
    reader.read_exact(&mut message).await.ok()?;
    String::from_utf8(message).ok()
}

/// A collector that stores every message; with `stop_after`, it goes down (closes its
/// connection, unread data and all, and its listener) once it has read that many.
fn collector(
    listener: TcpListener,
    received: Received,
    stop_after: Option<usize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut read = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if stop_after.is_none() {
                let received = received.clone();
                tokio::spawn(async move {
                    let mut reader = BufReader::new(stream);
                    while let Some(message) = frame(&mut reader).await {
                        received.push(message);
                    }
                });
                continue;
            }
            let mut reader = BufReader::new(stream);
            while let Some(message) = frame(&mut reader).await {
                received.push(message);
                read += 1;
                if Some(read) == stop_after {
                    // Down: the socket (with whatever is still unread in it) and the listener.
                    return;
                }
            }
        }
    })
}

async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// A temporary trail's path, and a collector on loopback that keeps everything (its address).
async fn trail_and_collector() -> (tempfile::TempDir, PathBuf, String, Received) {
    let dir = tempfile::tempdir().unwrap();
    let path = trail(dir.path());
    let (listener, addr) = listen().await;
    let received = Received::new();
    collector(listener, received.clone(), None);
    (dir, path, addr, received)
}

/// Appends the records `seqs` (see [`entry`]).
fn append(sink: &AuditSink, seqs: std::ops::RangeInclusive<u64>) {
    for i in seqs {
        sink.append(&entry(i)).unwrap();
    }
}

fn config(addr: &str, confirm_ms: u64) -> ExportConfig {
    let mut config = ExportConfig::tcp(addr);
    config.confirm_ms = confirm_ms;
    config.poll_ms = 50;
    config.backoff_max_ms = 200;
    config.hostname = Some("riposte-test".into());
    config
}

fn trail(dir: &Path) -> PathBuf {
    dir.join("audit").join("riposte-audit.jsonl")
}

/// seq -> hash of every record of the trail.
fn hashes(path: &Path) -> BTreeMap<u64, String> {
    lines(path)
        .iter()
        .map(|l| {
            let r: Record = serde_json::from_str(l).unwrap();
            (r.seq, r.hash.to_hex())
        })
        .collect()
}

/// Waits until `n` distinct records arrived.
async fn wait_distinct(received: &Received, n: usize) {
    received
        .wait_until(&format!("received {n} distinct records"), |m| {
            m.iter()
                .filter_map(|m| parse_exported(m))
                .map(|a| a.seq)
                .collect::<BTreeSet<_>>()
                .len()
                >= n
        })
        .await;
}

async fn wait_cursor(handle: &ExportHandle, seq: u64) {
    let mut cursor = handle.cursor();
    tokio::time::timeout(PATIENCE, cursor.wait_for(|c| *c >= seq))
        .await
        .unwrap_or_else(|_| panic!("the cursor never reached {seq}"))
        .unwrap();
}

/// Every record arrived, each copy with the trail's hash for its seq.
fn assert_all_arrived(received: &Received, trail: &Path) -> usize {
    let want = hashes(trail);
    let got = received.by_seq();
    assert_eq!(
        got.keys().copied().collect::<BTreeSet<_>>(),
        want.keys().copied().collect::<BTreeSet<_>>(),
        "every record arrives"
    );
    for (seq, copies) in &got {
        assert!(
            copies.iter().all(|h| *h == want[seq]),
            "seq {seq}: every copy carries the record's chain hash"
        );
    }
    got.values().map(|c| c.len() - 1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_outage_mid_stream_loses_nothing_and_duplicates_keep_their_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = trail(dir.path());
    let sink = AuditSink::open(&path, FsyncPolicy::Never).unwrap();
    append(&sink, 1..=1500);
    let (listener, addr) = listen().await;
    let received = Received::new();
    // The first collector goes down after 300 messages, with more on their way.
    let first = collector(listener, received.clone(), Some(300));
    let handle = Exporter::new(&config(&addr, 1000), &path)
        .start(Some(sink.subscribe()))
        .unwrap();
    tokio::time::timeout(PATIENCE, first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received.snapshot().len(), 300);
    // Meanwhile the service goes on writing: the trail is the buffer.
    append(&sink, 1501..=1600);
    // The collector comes back on the same address.
    let listener = TcpListener::bind(&addr).await.unwrap();
    collector(listener, received.clone(), None);
    wait_distinct(&received, 1600).await;
    // Records written after the collector came back go out at once.
    append(&sink, 1601..=1650);
    wait_cursor(&handle, 1650).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    wait_distinct(&received, 1650).await;
    let duplicates = assert_all_arrived(&received, &path);
    assert!(
        duplicates > 0,
        "the records in flight when the collector went down were sent again"
    );
    assert_eq!(read_cursor(&cursor_path(&path)).unwrap(), 1650);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_cursor() {
    let (_dir, path, addr, received) = trail_and_collector().await;
    {
        let sink = AuditSink::open(&path, FsyncPolicy::Never).unwrap();
        append(&sink, 1..=100);
        let handle = Exporter::new(&config(&addr, 50), &path)
            .start(Some(sink.subscribe()))
            .unwrap();
        wait_cursor(&handle, 100).await;
        handle.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(read_cursor(&cursor_path(&path)).unwrap(), 100);
    // The service is down a while; records keep coming (another process: no wake-up, the
    // exporter finds them by polling the trail).
    let sink = AuditSink::open(&path, FsyncPolicy::Never).unwrap();
    append(&sink, 101..=130);
    let handle = Exporter::new(&config(&addr, 50), &path)
        .start(None)
        .unwrap();
    wait_cursor(&handle, 130).await;
    append(&sink, 131..=150);
    wait_cursor(&handle, 150).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    received
        .wait_until("received 150 messages", |m| m.len() >= 150)
        .await;
    let duplicates = assert_all_arrived(&received, &path);
    assert_eq!(duplicates, 0, "the restart resumed after the cursor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abrupt_stop_resends_what_was_not_confirmed() {
    let (_dir, path, addr, received) = trail_and_collector().await;
    let sink = AuditSink::open(&path, FsyncPolicy::Never).unwrap();
    append(&sink, 1..=200);
    // Confirmation takes an hour: nothing is confirmed, the process "dies" (the handle is
    // dropped without a shutdown).
    let handle = Exporter::new(&config(&addr, 3_600_000), &path)
        .start(None)
        .unwrap();
    received
        .wait_until("received 200 messages", |m| m.len() >= 200)
        .await;
    drop(handle);
    assert_eq!(read_cursor(&cursor_path(&path)).unwrap(), 0);
    let handle = Exporter::new(&config(&addr, 50), &path)
        .start(None)
        .unwrap();
    wait_cursor(&handle, 200).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    received
        .wait_until("received every record twice", |m| m.len() >= 400)
        .await;
    assert_eq!(assert_all_arrived(&received, &path), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_against_the_export_catches_a_rewrite_after_the_export() {
    let (dir, path, addr, received) = trail_and_collector().await;
    let sink = AuditSink::open(&path, FsyncPolicy::EveryRecord).unwrap();
    append(&sink, 1..=20);
    let mut cef = config(&addr, 50);
    cef.format = ExportFormat::Cef;
    let handle = Exporter::new(&cef, &path).start(None).unwrap();
    wait_cursor(&handle, 20).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    received
        .wait_until("received 20 messages", |m| m.len() >= 20)
        .await;
    // The collector's file: one message a line, and a line of something else.
    let export = dir.path().join("siem-export.log");
    let mut stored = received.snapshot();
    stored.insert(
        3,
        "<13>1 2024-01-01T00:00:00Z other app - - - unrelated".into(),
    );
    std::fs::write(&export, stored.join("\n") + "\n").unwrap();
    let options = VerifyOptions::default();

    let report = check_against_export(&path, &export, &options).unwrap();
    assert_eq!((report.matched, report.ignored_lines), (20, 1));
    assert!(
        !report.is_tampered() && report.missing.is_empty(),
        "{report}"
    );

    // Records not exported yet are listed, not a tamper.
    append(&sink, 21..=25);
    drop(sink);
    let report = check_against_export(&path, &export, &options).unwrap();
    assert_eq!(report.missing, vec![(21, 25)]);
    assert!(!report.is_tampered());

    // A consistent local rewrite from seq 5 on: the chain alone verifies (unkeyed)...
    let original = lines(&path);
    let forged = forge(
        &original,
        4,
        Some("sha256"),
        &|b| Sha256Digest::of(b),
        &|i, body| {
            if i == 4 {
                body.replace("\"duration_us\":105", "\"duration_us\":1")
            } else {
                body
            }
        },
    );
    rewrite(&path, &forged);
    std::fs::remove_file(head_path(&path)).unwrap();
    riposte_audit::verify(&path).expect("a consistent rewrite of an unkeyed chain verifies");
    // ...but not against the export, which names the first record changed.
    let report = check_against_export(&path, &export, &options).unwrap();
    assert!(report.is_tampered());
    assert_eq!(report.mismatched.first(), Some(&5));
    assert_eq!(report.mismatched_count, 16);
    let args = AuditVerifyArgs {
        files: vec![path.clone()],
        expect_seq: None,
        expect_hash: None,
        no_head_file: false,
        key: None,
        against: Some(export.clone()),
    };
    let err = run_verify(&args, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("the first seq 5"), "{err}");

    // Trailing records deleted: the export holds records beyond the trail's end.
    rewrite(&path, &original[..15]);
    let report = check_against_export(&path, &export, &options).unwrap();
    assert_eq!(report.beyond, Some((16, 20)));
    assert!(report.is_tampered());
}
