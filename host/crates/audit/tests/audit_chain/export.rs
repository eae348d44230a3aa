//! The SIEM export against a collector on loopback (TCP, and TLS with a throwaway CA): an
//! outage mid-stream, a restart from the cursor, the export's stats, and `verify --against`
//! catching a local rewrite after the export.

use super::keyed::forge;
use super::{entry, lines, rewrite};
use riposte_audit::{
    AuditSink, AuditVerifyArgs, ExportConfig, ExportFormat, ExportHandle, ExportStats,
    ExportTransport, Exporter, FsyncPolicy, Record, VerifyOptions, check_against_export,
    cursor_path, head_path, parse_exported, read_cursor, run_verify,
};
use riposte_domain::Sha256Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

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

/// A collector's side of one connection: plain TCP, or TLS.
type Stream = Box<dyn AsyncRead + Unpin + Send>;

/// The stream of an accepted connection: over TLS with `tls` (`None` if the handshake fails).
async fn accept(stream: TcpStream, tls: Option<&TlsAcceptor>) -> Option<Stream> {
    match tls {
        None => Some(Box::new(stream)),
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => Some(Box::new(stream)),
            Err(_) => None,
        },
    }
}

/// Reads one RFC 6587 octet-counted frame; `None` at the end of the stream.
async fn frame(reader: &mut BufReader<Stream>) -> Option<String> {
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

/// A collector that stores every message (over TLS with `tls`); with `stop_after`, it goes
/// down (closes its connection, unread data and all, and its listener) once it has read that
/// many.
fn collector(
    listener: TcpListener,
    received: Received,
    stop_after: Option<usize>,
    tls: Option<TlsAcceptor>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut read = 0;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let Some(stream) = accept(stream, tls.as_ref()).await else {
                continue;
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
    collector(listener, received.clone(), None, None);
    (dir, path, addr, received)
}

/// A throwaway CA (its PEM file in `dir`, for `ca_file`) and the TLS acceptor of a collector
/// it certifies for `localhost` and `127.0.0.1`.
fn throwaway_pki(dir: &Path) -> (PathBuf, TlsAcceptor) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    use rustls::pki_types::PrivatePkcs8KeyDer;
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let ca_file = dir.join("siem-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
    .unwrap();
    (ca_file, TlsAcceptor::from(Arc::new(config)))
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

/// Waits until the export's stats satisfy `done`; returns them.
async fn wait_stats(
    stats: &watch::Receiver<ExportStats>,
    what: &str,
    done: impl Fn(&ExportStats) -> bool,
) -> ExportStats {
    let mut watched = stats.clone();
    match tokio::time::timeout(PATIENCE, watched.wait_for(|s| done(s))).await {
        Ok(seen) => *seen.unwrap(),
        Err(_) => panic!("the export never {what}: {:?}", *stats.borrow()),
    }
}

/// Exports the trail at `path` (written by `sink`) as `export` says to a collector on `listener` (over TLS with
/// `tls`) that goes down after `stop_after` messages, with more on their way; returns once
/// it is down.
async fn export_until_outage(
    listener: TcpListener,
    export: &ExportConfig,
    (path, sink): (&Path, &AuditSink),
    received: &Received,
    stop_after: usize,
    tls: Option<TlsAcceptor>,
) -> ExportHandle {
    let first = collector(listener, received.clone(), Some(stop_after), tls);
    let handle = Exporter::new(export, path)
        .start(Some(sink.subscribe()))
        .unwrap();
    tokio::time::timeout(PATIENCE, first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received.snapshot().len(), stop_after);
    handle
}

/// An export whose confirmation takes an hour, once the collector has received `n` messages:
/// all written, none confirmed.
async fn written_not_confirmed(
    addr: &str,
    path: &Path,
    received: &Received,
    n: usize,
) -> ExportHandle {
    let handle = Exporter::new(&config(addr, 3_600_000), path)
        .start(None)
        .unwrap();
    received
        .wait_until(&format!("received {n} messages"), |m| m.len() >= n)
        .await;
    handle
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
    let export = config(&addr, 1000);
    let handle = export_until_outage(listener, &export, (&path, &sink), &received, 300, None).await;
    let stats = handle.stats();
    // Meanwhile the service goes on writing: the trail is the buffer.
    append(&sink, 1501..=1600);
    // The stats show the outage: the lag grows, connections fail.
    let away = wait_stats(&stats, "saw the outage", |s| {
        s.head == 1600 && s.connection_failures > 0
    })
    .await;
    assert!(away.lag() >= 1300 && away.cursor <= 300, "{away:?}");
    // The collector comes back on the same address.
    let listener = TcpListener::bind(&addr).await.unwrap();
    collector(listener, received.clone(), None, None);
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
    let end = *stats.borrow();
    assert_eq!(
        (end.cursor, end.head, end.lag(), end.exported),
        (1650, 1650, 0, 1650)
    );
    assert!(
        end.resent >= duplicates as u64,
        "every duplicate the collector got was counted as resent: {end:?}"
    );
    assert!(end.connection_failures >= away.connection_failures);
    assert!(end.last_write.is_some());
}

/// Over TLS, the collector verified against a throwaway CA (`ca_file`): every record
/// arrives across a collector outage and an exporter restart, and duplicates carry the seq
/// and chain hash of their record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_an_outage_and_a_restart_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = trail(dir.path());
    let (ca_file, acceptor) = throwaway_pki(dir.path());
    let sink = AuditSink::open(&path, FsyncPolicy::Never).unwrap();
    append(&sink, 1..=600);
    let (listener, addr) = listen().await;
    let received = Received::new();
    let mut tls = config(&addr, 1000);
    tls.transport = ExportTransport::Tls;
    tls.ca_file = Some(ca_file);
    tls.server_name = Some("localhost".into());
    let handle = export_until_outage(
        listener,
        &tls,
        (&path, &sink),
        &received,
        200,
        Some(acceptor.clone()),
    )
    .await;
    let stats = handle.stats();
    append(&sink, 601..=700);
    let listener = TcpListener::bind(&addr).await.unwrap();
    collector(listener, received.clone(), None, Some(acceptor));
    wait_distinct(&received, 700).await;
    wait_cursor(&handle, 700).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    let first_run = *stats.borrow();
    // The service restarts; records appended while it was down go out after the cursor.
    append(&sink, 701..=750);
    let handle = Exporter::new(&tls, &path)
        .start(Some(sink.subscribe()))
        .unwrap();
    let stats = handle.stats();
    wait_cursor(&handle, 750).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    wait_distinct(&received, 750).await;
    let duplicates = assert_all_arrived(&received, &path);
    assert!(
        duplicates > 0,
        "the records in flight when the collector went down were sent again"
    );
    assert!(first_run.resent >= duplicates as u64, "{first_run:?}");
    assert_eq!(
        (stats.borrow().exported, stats.borrow().resent),
        (50, 0),
        "the restart resumed after the cursor"
    );
    assert_eq!(read_cursor(&cursor_path(&path)).unwrap(), 750);
}

/// A stop that cannot confirm what it wrote records it in the cursor: the next run sends it
/// again and counts it as resent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_counts_the_records_it_sends_again() {
    let (_dir, path, addr, received) = trail_and_collector().await;
    let sink = AuditSink::open(&path, FsyncPolicy::Never).unwrap();
    append(&sink, 1..=50);
    let handle = written_not_confirmed(&addr, &path, &received, 50).await;
    let first = handle.stats();
    handle.shutdown(Duration::from_millis(200)).await.unwrap();
    assert_eq!(read_cursor(&cursor_path(&path)).unwrap(), 0);
    assert_eq!((first.borrow().exported, first.borrow().lag()), (0, 50));
    let handle = Exporter::new(&config(&addr, 50), &path)
        .start(None)
        .unwrap();
    append(&sink, 51..=60);
    wait_cursor(&handle, 60).await;
    let stats = handle.stats();
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    let end = *stats.borrow();
    assert_eq!(
        (end.exported, end.resent, end.connection_failures, end.lag()),
        (60, 50, 0, 0),
        "{end:?}"
    );
    assert!(end.last_write.is_some());
    received
        .wait_until("received 110 messages", |m| m.len() >= 110)
        .await;
    assert_eq!(assert_all_arrived(&received, &path), 50);
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

/// Under `fsync = "batch"` only records forced to disk are exported: one a power cut could
/// still take back would leave the SIEM holding a seq the restarted trail gives to another
/// record. Before the first barrier nothing goes; each barrier lets the records before it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_batch_fsync_only_records_on_disk_are_exported() {
    let (_dir, path, addr, received) = trail_and_collector().await;
    let sink = AuditSink::open(&path, FsyncPolicy::Batch).unwrap();
    append(&sink, 1..=10);
    let handle = Exporter::new(&config(&addr, 50), &path)
        .start(Some(sink.subscribe()))
        .unwrap();
    assert_eq!(
        exported_after_polls(&handle, &received).await,
        BTreeSet::new()
    );
    sink.barrier().unwrap();
    wait_cursor(&handle, 10).await;
    append(&sink, 11..=20);
    let exported = exported_after_polls(&handle, &received).await;
    assert_eq!(exported, (1..=10).collect(), "only what is on disk");
    sink.barrier().unwrap();
    wait_cursor(&handle, 20).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(assert_all_arrived(&received, &path), 0);
}

/// Under `fsync = N` the same: the records after the last group of N wait for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_fsync_every_n_records_only_records_on_disk_are_exported() {
    let (_dir, path, addr, received) = trail_and_collector().await;
    let sink = AuditSink::open(&path, FsyncPolicy::Interval(4)).unwrap();
    append(&sink, 1..=10);
    let handle = Exporter::new(&config(&addr, 50), &path)
        .start(Some(sink.subscribe()))
        .unwrap();
    wait_cursor(&handle, 8).await;
    let exported = exported_after_polls(&handle, &received).await;
    assert_eq!(
        exported,
        (1..=8).collect(),
        "only the two groups forced to disk"
    );
    append(&sink, 11..=12);
    wait_cursor(&handle, 12).await;
    // A barrier forces the rest of a group, which then goes out too.
    append(&sink, 13..=13);
    sink.barrier().unwrap();
    wait_cursor(&handle, 13).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(assert_all_arrived(&received, &path), 0);
}

/// A head file deleted under the writer names nothing on disk any more: the export waits,
/// and goes on once a writer that opened the trail again forces a record to disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_file_gone_holds_the_export_back() {
    let (_dir, path, addr, received) = trail_and_collector().await;
    let sink = AuditSink::open(&path, FsyncPolicy::Batch).unwrap();
    append(&sink, 1..=5);
    sink.barrier().unwrap();
    let handle = Exporter::new(&config(&addr, 50), &path)
        .start(Some(sink.subscribe()))
        .unwrap();
    wait_cursor(&handle, 5).await;
    std::fs::remove_file(head_path(&path)).unwrap();
    append(&sink, 6..=8);
    sink.barrier().unwrap();
    let exported = exported_after_polls(&handle, &received).await;
    assert_eq!(
        exported,
        (1..=5).collect(),
        "nothing past the head file's loss"
    );
    drop(sink);
    let sink = AuditSink::open(&path, FsyncPolicy::Batch).unwrap();
    append(&sink, 9..=9);
    sink.barrier().unwrap();
    wait_cursor(&handle, 9).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(assert_all_arrived(&received, &path), 0);
}

/// The seqs the collector received, once the export polled the trail several times more.
async fn exported_after_polls(handle: &ExportHandle, received: &Received) -> BTreeSet<u64> {
    let mut stats = handle.stats();
    for _ in 0..5 {
        stats.changed().await.unwrap();
    }
    received
        .snapshot()
        .iter()
        .filter_map(|m| parse_exported(m))
        .map(|a| a.seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abrupt_stop_resends_what_was_not_confirmed() {
    let (_dir, path, addr, received) = trail_and_collector().await;
    let sink = AuditSink::open(&path, FsyncPolicy::Never).unwrap();
    append(&sink, 1..=200);
    // Nothing is confirmed, the process "dies" (the handle is dropped without a shutdown).
    let handle = written_not_confirmed(&addr, &path, &received, 200).await;
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

    let report = check_against_export(&path, &export, &options, None).unwrap();
    assert_eq!((report.matched, report.ignored_lines), (20, 1));
    assert!(
        !report.is_tampered() && report.missing.is_empty(),
        "{report}"
    );

    // Records not exported yet are listed, not a tamper.
    append(&sink, 21..=25);
    drop(sink);
    let report = check_against_export(&path, &export, &options, None).unwrap();
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
    let report = check_against_export(&path, &export, &options, None).unwrap();
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
        host: None,
    };
    let err = run_verify(&args, &mut Vec::new()).unwrap_err().to_string();
    assert!(err.contains("the first seq 5"), "{err}");

    // Trailing records deleted: the export holds records beyond the trail's end.
    rewrite(&path, &original[..15]);
    let report = check_against_export(&path, &export, &options, None).unwrap();
    assert_eq!(report.beyond, Some((16, 20)));
    assert!(report.is_tampered());
}

/// Two hosts export to one SIEM, each numbering its trail from 1: the check reads only the
/// records of the host named, and refuses to guess when none is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_against_an_export_of_several_hosts_checks_the_one_named() {
    let (dir, _, addr, received) = trail_and_collector().await;
    let mut trails = Vec::new();
    for (name, format) in [("alpha", ExportFormat::Json), ("beta", ExportFormat::Cef)] {
        let path = dir.path().join(name).join("riposte-audit.jsonl");
        let sink = AuditSink::open(&path, FsyncPolicy::EveryRecord).unwrap();
        // Different records under the same seqs.
        append(&sink, if name == "alpha" { 1..=10 } else { 101..=110 });
        let mut export = config(&addr, 50);
        export.hostname = Some(name.into());
        export.format = format;
        let handle = Exporter::new(&export, &path).start(None).unwrap();
        wait_cursor(&handle, 10).await;
        handle.shutdown(Duration::from_secs(5)).await.unwrap();
        trails.push(path);
    }
    received
        .wait_until("received both hosts' records", |m| m.len() >= 20)
        .await;
    // The collector stored the payloads alone (its own header in front): the payload names
    // the host.
    let export = dir.path().join("siem-export.log");
    let stored: Vec<String> = received
        .snapshot()
        .iter()
        .map(|m| {
            format!(
                "Nov 14 22:13:20 collector {}",
                m.split_once(" - riposte-audit - ").unwrap().1
            )
        })
        .collect();
    std::fs::write(&export, stored.join("\n") + "\n").unwrap();
    let options = VerifyOptions::default();

    let err = check_against_export(&trails[0], &export, &options, None).unwrap_err();
    assert!(
        matches!(&err, riposte_audit::Error::SeveralHosts { hosts, .. } if hosts == &["alpha", "beta"]),
        "{err}"
    );
    assert!(err.to_string().contains("--host"), "{err}");
    for (trail, host) in trails.iter().zip(["alpha", "beta"]) {
        let report = check_against_export(trail, &export, &options, Some(host)).unwrap();
        assert_eq!(
            (report.matched, report.other_hosts),
            (10, 10),
            "{host}: {report}"
        );
        assert!(
            !report.is_tampered() && report.missing.is_empty(),
            "{report}"
        );
    }
    let args = AuditVerifyArgs {
        files: vec![trails[0].clone()],
        expect_seq: None,
        expect_hash: None,
        no_head_file: false,
        key: None,
        against: Some(export.clone()),
        host: Some("alpha".into()),
    };
    let mut out = Vec::new();
    run_verify(&args, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("10 records match the export (10 exported records of other hosts left out)"),
        "{out}"
    );
    // A name spelt as configured (a space) is compared as exported records spell it (`_`);
    // a name no record carries is an error, not "nothing to compare".
    let spelt = check_against_export(&trails[0], &export, &options, Some("al pha")).unwrap_err();
    assert!(
        matches!(&spelt, riposte_audit::Error::HostNotInExport { host, hosts, .. }
            if host == "al_pha" && hosts == &["alpha", "beta"]),
        "{spelt}"
    );
    // Records exported before payloads named their host, beside newer ones of one host:
    // this trail's, checked with the rest.
    let older = dir.path().join("older-export.log");
    let alpha: Vec<String> = stored
        .iter()
        .filter(|l| l.contains("\"host\":\"alpha\""))
        .enumerate()
        .map(|(i, l)| {
            if i % 2 == 0 {
                l.replace("\"host\":\"alpha\",", "")
            } else {
                l.clone()
            }
        })
        .collect();
    assert_eq!(alpha.len(), 10);
    std::fs::write(&older, alpha.join("\n") + "\n").unwrap();
    let report = check_against_export(&trails[0], &older, &options, None).unwrap();
    assert_eq!((report.matched, report.other_hosts), (10, 0), "{report}");
    // Beside two named hosts they cannot be told apart: left out, not checked.
    let mixed = dir.path().join("mixed-export.log");
    std::fs::write(
        &mixed,
        [stored.join("\n"), alpha.join("\n")].join("\n") + "\n",
    )
    .unwrap();
    let report = check_against_export(&trails[0], &mixed, &options, Some("alpha")).unwrap();
    assert_eq!((report.matched, report.other_hosts), (10, 15), "{report}");
    // The other host's records under the same seqs contradict this trail.
    let crossed = check_against_export(&trails[0], &export, &options, Some("beta")).unwrap();
    assert!(crossed.is_tampered(), "{crossed}");
}

/// A collector that stops reading leaves the last records in this host's socket buffer:
/// written, never delivered. A stop in that state does not count them as exported; the next
/// run sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_confirms_only_what_a_silent_collector_took() {
    let (_dir, path, addr, received) = trail_and_collector().await;
    let sink = AuditSink::open(&path, FsyncPolicy::Never).unwrap();
    append(&sink, 1..=20);
    // A collector with a tiny receive buffer that accepts and never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let silent = socket.listen(1).unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let (held_tx, mut held) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        if let Ok((stream, _)) = silent.accept().await {
            let _ = held_tx.send(stream).await;
        }
    });
    let handle = Exporter::new(&config(&silent_addr, 50), &path)
        .start(None)
        .unwrap();
    let _stream = held.recv().await.expect("the exporter connects");
    handle.shutdown(Duration::from_millis(1500)).await.unwrap();
    let confirmed = read_cursor(&cursor_path(&path)).unwrap();
    assert!(
        confirmed < 20,
        "confirmed {confirmed} records stuck in a socket buffer"
    );

    let handle = Exporter::new(&config(&addr, 50), &path)
        .start(None)
        .unwrap();
    wait_cursor(&handle, 20).await;
    handle.shutdown(Duration::from_secs(5)).await.unwrap();
    received
        .wait_until("received the rest", |m| m.len() as u64 >= 20 - confirmed)
        .await;
    let got: BTreeSet<u64> = received
        .snapshot()
        .iter()
        .filter_map(|m| parse_exported(m))
        .map(|a| a.seq)
        .collect();
    assert_eq!(got, (confirmed + 1..=20).collect());
}
