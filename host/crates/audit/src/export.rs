//! The SIEM export: every audit record, at least once, as an RFC 5424 message carrying its
//! seq and chain hash; and the check of a local trail against such an export.
//!
//! # Delivery
//!
//! The [`Exporter`] reads the trail from its cursor in chunks of `batch_records` and hands
//! each record to a [`SyslogSender`] (a bounded queue in front of one TCP or TLS connection).
//! The trail itself is the buffer: when the collector is away the queue fills, the exporter
//! waits, and nothing else does (it is its own task; the service never waits on it).
//!
//! Syslog has no acknowledgement: a record written to the socket may still be lost if the
//! connection breaks before the collector read it. So a record counts as delivered only when
//! the connection that carried it stayed up `confirm_ms` after it was written (no write
//! failure, no close seen by the sender meanwhile). Then the cursor moves past it: a small
//! file beside the trail (`<trail>.export-cursor`), replaced atomically (temporary file,
//! fsync, rename, fsync of the directory). When the connection breaks, the exporter starts
//! a fresh sender and resends everything after the cursor. After a restart it resumes from
//! the cursor. Records may therefore arrive twice; each carries its seq, so duplicates are
//! recognisable (same seq, same chain hash).
//!
//! # Stats
//!
//! [`ExportHandle::stats`] watches what the export has done ([`ExportStats`]): how far the
//! cursor trails the trail's head, records delivered and sent again, connection failures and
//! the time of the last write; the service's metrics read it (this crate knows nothing of
//! metrics).

use super::{Error, ExportConfig, Sha256Digest, VerifyOptions, verify_with};
use crate::log::read_head;
use crate::{MAX_LINE_BYTES, read_line};
use riposte_syslog::format::{
    AuditRecord, Facility, Origin, Priority, RecordPayload, Severity, exported_anchor,
};
use riposte_syslog::{OutgoingMessage, SenderConfig, SyslogSender};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use riposte_syslog::format::ExportedAnchor;

/// Records written and not yet confirmed that the exporter keeps track of; beyond it, it
/// waits for confirmations before reading on.
const MAX_UNCONFIRMED: usize = 100_000;
/// The priority of exported records: facility `log audit` (13), severity notice.
const PRIORITY: Priority = Priority::new(Facility::Audit, Severity::Notice);

/// The export cursor file of a trail: `<trail>.export-cursor`.
pub fn cursor_path(trail: &Path) -> PathBuf {
    let mut name = trail.file_name().unwrap_or_default().to_os_string();
    name.push(".export-cursor");
    trail.with_file_name(name)
}

/// The cursor: every record up to `seq` was delivered; `offset` is the byte just after it.
/// `written`: the highest seq written to a collector's connection when the cursor was
/// stored (records up to it that go out again are counted as resent; absent from cursors
/// written before it existed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    seq: u64,
    offset: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    written: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an export has done since it started ([`ExportHandle::stats`]), for the service's
/// metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// The seq of the newest record known to be in the trail: announced by the audit sink
    /// or read by the export.
    pub head: u64,
    /// The seq the cursor file records as delivered.
    pub cursor: u64,
    /// Records delivered since the export started: written, confirmed, and the cursor moved
    /// past them.
    pub exported: u64,
    /// Records queued again since the export started, having been written before: after a
    /// broken connection, or after a restart (records written since the previous run last
    /// stored its cursor, less the last confirmation period before a crash).
    pub resent: u64,
    /// Connection failures since the export started: attempts to connect that failed,
    /// connections the collector closed, and writes that failed.
    pub connection_failures: u64,
    /// When a record was last written to the collector's connection (seen at the
    /// confirmation tick, so within `confirm_ms`); `None` before the first.
    pub last_write: Option<SystemTime>,
}

impl ExportStats {
    /// Records appended to the trail and not yet delivered (`head - cursor`).
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.cursor)
    }
}

fn cursor_error(path: &Path, detail: impl Into<String>) -> Error {
    Error::Cursor {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

fn load_cursor(path: &Path) -> Result<Cursor, Error> {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|f| f.take(4097).read_to_end(&mut bytes));
    match read.map(|_| bytes) {
        Ok(bytes) if bytes.len() > 4096 => Err(cursor_error(path, "larger than a cursor")),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| cursor_error(path, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cursor::default()),
        Err(e) => Err(cursor_error(path, format!("cannot read it: {e}"))),
    }
}

/// The last seq the export cursor at `path` records as delivered (0 when there is none).
pub fn read_cursor(path: &Path) -> Result<u64, Error> {
    load_cursor(path).map(|c| c.seq)
}

/// Replaces the cursor file atomically: a temporary file, fsync, rename, fsync of the
/// directory; a crash leaves the old cursor or the new one, never a mix.
fn store_cursor(path: &Path, cursor: Cursor) -> Result<(), Error> {
    let fail = |what: &str, e: std::io::Error| cursor_error(path, format!("{what}: {e}"));
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_vec(&cursor).expect("two numbers always encode");
    let mut file = File::create(&tmp).map_err(|e| fail("cannot create its temporary file", e))?;
    file.write_all(&text)
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("cannot write its temporary file", e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail("cannot rename the temporary file", e))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("cannot fsync its directory", e))
}

/// Why the trail could not be read from an offset.
enum ReadProblem {
    Io(&'static str, std::io::Error),
    /// The trail is shorter (this many bytes) than the offset.
    Shorter(u64),
    TooLong,
}

/// Lines read from the trail: each without its `\n`, with the offset just after it; and
/// whether the file ended there.
type Chunk = (Vec<(Vec<u8>, u64)>, bool);

/// [`read_lines`] after the record `after`, up to the last record on disk only: under
/// `fsync = "batch"` or N the head file names the last record forced to disk (written at
/// each sync; empty before the first), and a record a power cut could still take back must
/// not reach the SIEM (after the restart its seq would name another record). Stopped there,
/// the chunk ends the trail. The writer creates the head file when it opens the trail, so a
/// head file gone (deleted under the service) or unreadable names nothing on disk: the
/// export waits (its lag shows it) rather than send records a power cut could take back.
fn read_durable(trail: &Path, from: u64, after: u64, max: usize) -> Result<Chunk, ReadProblem> {
    let durable = read_head(trail).ok().flatten().map_or(0, |head| head.seq);
    match durable.saturating_sub(after) {
        0 => Ok((Vec::new(), true)),
        on_disk if (on_disk as usize) <= max => {
            read_lines(trail, from, on_disk as usize).map(|(lines, _)| (lines, true))
        }
        _ => read_lines(trail, from, max),
    }
}

/// The complete lines (without their `\n`, each with the offset just after it) of the file at
/// `trail` from byte `from`, at most `max`; and whether the file ended (a line still being
/// written counts as the end). Blocking.
fn read_lines(trail: &Path, from: u64, max: usize) -> Result<Chunk, ReadProblem> {
    let mut file = match File::open(trail) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
        Err(e) => return Err(ReadProblem::Io("open for the export", e)),
    };
    let len = file
        .metadata()
        .map_err(|e| ReadProblem::Io("read the size of", e))?
        .len();
    if len < from {
        return Err(ReadProblem::Shorter(len));
    }
    file.seek(SeekFrom::Start(from))
        .map_err(|e| ReadProblem::Io("seek", e))?;
    let mut reader = BufReader::new(file);
    let mut lines = Vec::new();
    let mut offset = from;
    while lines.len() < max {
        let mut line = Vec::new();
        let n = read_line(&mut reader, &mut line)
            .map_err(|e| ReadProblem::Io("read", e))?
            .ok_or(ReadProblem::TooLong)?;
        if n == 0 || line.last() != Some(&b'\n') {
            // The end, or a record being written: read again later.
            return Ok((lines, true));
        }
        line.pop();
        offset += n as u64;
        lines.push((line, offset));
    }
    Ok((lines, false))
}

/// One record ready to go: its seq, the byte after its line, and its message.
struct Ready {
    seq: u64,
    end: u64,
    message: OutgoingMessage,
}

/// The SIEM exporter of one trail (see the module documentation). Build it with
/// [`Exporter::new`], run it with [`Exporter::start`].
#[derive(Debug)]
pub struct Exporter {
    trail: PathBuf,
    cursor_file: PathBuf,
    sender: SenderConfig,
    payload: RecordPayload,
    origin: Origin,
    batch: usize,
    confirm: Duration,
    poll: Duration,
}

impl Exporter {
    /// An exporter of the trail at `trail` as `config` says (its cursor beside the trail
    /// unless `config.cursor` names another file).
    pub fn new(config: &ExportConfig, trail: &Path) -> Self {
        Self {
            trail: trail.to_path_buf(),
            cursor_file: config.cursor.clone().unwrap_or_else(|| cursor_path(trail)),
            sender: config.sender(),
            payload: config.format.into(),
            origin: Origin::new(
                config
                    .hostname
                    .clone()
                    .or_else(riposte_domain::host_name)
                    .unwrap_or_else(|| "-".to_owned()),
                config.app_name.clone(),
            ),
            batch: config.batch_records.max(1),
            confirm: Duration::from_millis(config.confirm_ms.max(1)),
            poll: Duration::from_millis(config.poll_ms.max(1)),
        }
    }

    /// Starts exporting in a task of its own (inside a tokio runtime). `appended` (from
    /// [`crate::AuditSink::subscribe`]) wakes it as soon as the service appends a record;
    /// records other processes append are found every `poll_ms`. Fails at once if the
    /// cursor cannot be read or the sender's settings or TLS material are unusable.
    pub fn start(self, appended: Option<watch::Receiver<u64>>) -> Result<ExportHandle, Error> {
        let cursor = load_cursor(&self.cursor_file)?;
        let sender = SyslogSender::start(&self.sender).map_err(|e| Error::Export {
            collector: self.sender.address.clone(),
            detail: e.to_string(),
        })?;
        let (stop_tx, stop) = watch::channel(None);
        let (cursor_tx, cursor_rx) = watch::channel(cursor.seq);
        let head = appended.as_ref().map_or(0, |a| *a.borrow());
        let (stats_tx, stats_rx) = watch::channel(ExportStats {
            head: head.max(cursor.seq),
            cursor: cursor.seq,
            ..ExportStats::default()
        });
        let run = Run {
            exporter: self,
            sender,
            cursor,
            cursor_tx,
            next: cursor,
            ready: VecDeque::new(),
            sent: VecDeque::new(),
            troubles: 0,
            candidate: None,
            stats: stats_tx,
            head,
            exported: 0,
            resent: 0,
            resend_up_to: cursor.written,
            earlier_failures: 0,
            last_write: None,
        };
        let trail = run.exporter.trail.clone();
        let task = tokio::spawn(async move {
            let result = run.run(stop, appended).await;
            if let Err(error) = &result {
                tracing::error!(trail = %trail.display(), "the SIEM export stopped: {error}");
            }
            result
        });
        Ok(ExportHandle {
            stop: stop_tx,
            cursor: cursor_rx,
            stats: stats_rx,
            task,
        })
    }
}

/// A running export. Dropping it stops the export at once (what was not confirmed is sent
/// again by the next run); [`ExportHandle::shutdown`] gives it time to finish.
#[derive(Debug)]
pub struct ExportHandle {
    stop: watch::Sender<Option<Duration>>,
    cursor: watch::Receiver<u64>,
    stats: watch::Receiver<ExportStats>,
    task: JoinHandle<Result<(), Error>>,
}

impl ExportHandle {
    /// The seq the cursor file records as delivered; changes as it moves.
    pub fn cursor(&self) -> watch::Receiver<u64> {
        self.cursor.clone()
    }

    /// What the export has done so far; updated at every confirmation tick (`confirm_ms`)
    /// and whenever the cursor moves. Still readable after the export stopped.
    pub fn stats(&self) -> watch::Receiver<ExportStats> {
        self.stats.clone()
    }

    /// Stops the export: within `grace`, the records appended so far are read and sent, and
    /// once written and confirmed the cursor moves past them. Whatever is not confirmed by
    /// then is sent again by the next run. Returns the export's error, if it stopped on one.
    pub async fn shutdown(self, grace: Duration) -> Result<(), Error> {
        let _ = self.stop.send(Some(grace));
        let abort = self.task.abort_handle();
        // The task itself bounds its flush by `grace`; this bound is a safety net.
        match tokio::time::timeout(grace + Duration::from_secs(5), self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => {
                abort.abort();
                Ok(())
            }
        }
    }
}

/// The exporter's state while it runs.
struct Run {
    exporter: Exporter,
    sender: SyslogSender,
    /// What the cursor file says.
    cursor: Cursor,
    cursor_tx: watch::Sender<u64>,
    /// The next record to read: the one after `next.seq`, at byte `next.offset`.
    next: Cursor,
    /// Records read and not yet queued.
    ready: VecDeque<Ready>,
    /// Records queued and not yet confirmed: (seq, byte after it).
    sent: VecDeque<(u64, u64)>,
    /// The sender's troubles (write failures, connections closed) at the last tick.
    troubles: u64,
    /// The seq written at the last tick: confirmed at the next if no trouble came between.
    candidate: Option<u64>,
    /// Published at every tick and cursor move.
    stats: watch::Sender<ExportStats>,
    /// The newest seq the audit sink announced or the export read.
    head: u64,
    /// Records delivered since the start.
    exported: u64,
    /// Records queued again since the start.
    resent: u64,
    /// The highest seq written on an earlier connection (or by an earlier run): a record up
    /// to it that is queued again is a resend.
    resend_up_to: u64,
    /// Connection failures of the senders dropped so far.
    earlier_failures: u64,
    /// When a record was last seen written.
    last_write: Option<SystemTime>,
}

impl Run {
    async fn run(
        mut self,
        mut stop: watch::Receiver<Option<Duration>>,
        mut appended: Option<watch::Receiver<u64>>,
    ) -> Result<(), Error> {
        let mut tick = tokio::time::interval(self.exporter.confirm);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(self.exporter.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut at_end = false;
        // Set on shutdown: the trail is read to its end and sent until then.
        let mut deadline: Option<tokio::time::Instant> = None;
        // A shutdown asked for (not a dropped handle, which stands for a crash).
        let mut graceful = false;
        loop {
            if self.ready.is_empty() && !at_end && self.sent.len() < MAX_UNCONFIRMED {
                at_end = self.read_chunk().await?;
            }
            if deadline.is_some() && at_end && self.ready.is_empty() {
                break;
            }
            let next_message = self.ready.front().map(|r| r.message.clone());
            let until =
                deadline.unwrap_or_else(|| tokio::time::Instant::now() + self.exporter.poll);
            tokio::select! {
                biased;
                _ = stop.changed(), if deadline.is_none() => {
                    // A dropped handle reads as no grace at all.
                    let asked = *stop.borrow();
                    graceful = asked.is_some();
                    let grace = asked.unwrap_or(Duration::ZERO);
                    deadline = Some(tokio::time::Instant::now() + grace);
                    at_end = false;
                }
                () = tokio::time::sleep_until(until), if deadline.is_some() => break,
                _ = tick.tick() => {
                    if let Some(appended) = &appended {
                        self.head = self.head.max(*appended.borrow());
                    }
                    self.confirm_or_rewind().await?;
                    self.publish();
                }
                queued = queue(&self.sender, next_message) => {
                    if queued.is_err() {
                        // The sender's task ended: start over from the cursor.
                        self.rewind()?;
                        continue;
                    }
                    let r = self.ready.pop_front().expect("a message was queued from it");
                    if r.seq <= self.resend_up_to {
                        self.resent += 1;
                    }
                    self.sent.push_back((r.seq, r.end));
                }
                _ = poll.tick(), if at_end && self.ready.is_empty() => at_end = false,
                changed = announced(&mut appended), if at_end && self.ready.is_empty() => {
                    if changed.is_err() {
                        // The sink is gone: polling only from now on.
                        appended = None;
                    }
                    at_end = false;
                }
            }
            if !self.ready.is_empty() {
                at_end = false;
            }
        }
        self.flush(deadline.unwrap_or_else(tokio::time::Instant::now), graceful)
            .await
    }

    /// Reads up to `batch` complete records after `next` (the file is read on the blocking
    /// pool); returns whether the trail ended.
    async fn read_chunk(&mut self) -> Result<bool, Error> {
        let (trail, from, after, batch) = (
            self.exporter.trail.clone(),
            self.next.offset,
            self.next.seq,
            self.exporter.batch,
        );
        let chunk = tokio::task::spawn_blocking(move || read_durable(&trail, from, after, batch))
            .await
            .map_err(|e| self.bad_line(&format!("the reading task failed: {e}")))?;
        let (lines, at_end) = match chunk {
            Ok(chunk) => chunk,
            Err(ReadProblem::Io(action, source)) => {
                return Err(Error::Io {
                    path: self.exporter.trail.clone(),
                    action,
                    source,
                });
            }
            Err(ReadProblem::Shorter(len)) => {
                return Err(self.bad_line(&format!(
                    "the trail is {len} bytes, shorter than the cursor's offset: it was truncated or replaced; move the cursor file aside to export it from the start"
                )));
            }
            Err(ReadProblem::TooLong) => return Err(self.bad_line("a line longer than 16 MiB")),
        };
        for (line, end) in lines {
            let ready = self.prepare(&line, end)?;
            self.next = Cursor {
                seq: ready.seq,
                offset: ready.end,
                written: 0,
            };
            self.ready.push_back(ready);
        }
        self.head = self.head.max(self.next.seq);
        Ok(at_end)
    }

    fn bad_line(&self, detail: &str) -> Error {
        cursor_error(
            &self.exporter.cursor_file,
            format!(
                "the trail {} at byte {} (after seq {}): {detail}",
                self.exporter.trail.display(),
                self.next.offset,
                self.next.seq
            ),
        )
    }

    /// The message for one trail line, which must be the record after `next`.
    fn prepare(&self, line: &[u8], end: u64) -> Result<Ready, Error> {
        let mut fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(line)
                .map_err(|e| self.bad_line(&format!("not an audit record: {e}")))?;
        let seq = fields.get("seq").and_then(|v| v.as_u64());
        let expected = self.next.seq + 1;
        if seq != Some(expected) {
            return Err(self.bad_line(&format!(
                "seq {} where {expected} was due: the trail changed under the export; check it with `riposte audit verify`",
                seq.map_or_else(|| "missing".to_owned(), |s| s.to_string())
            )));
        }
        let mut take = |name: &str| fields.remove(name);
        let hash = take("hash").and_then(|v| v.as_str().map(str::to_owned));
        let time_ms = take("time_ms").and_then(|v| v.as_i64()).unwrap_or(0);
        let kind = take("call").and_then(|v| v.as_str().map(str::to_owned));
        take("seq");
        let (Some(chain_hash), Some(kind)) = (hash, kind) else {
            return Err(self.bad_line("a record without its hash or call"));
        };
        let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(time_ms).unwrap_or(0));
        let mut record = AuditRecord {
            seq: expected,
            chain_hash,
            time,
            kind,
            fields,
        };
        let message = match self.format(&record) {
            Some(message) => message,
            None => {
                // Too long for one message, or not expressible in CEF: the anchor (seq and
                // chain hash) still goes, the content stays in the trail.
                let mut stub = serde_json::Map::new();
                stub.insert("truncated".into(), true.into());
                stub.insert("record_bytes".into(), line.len().into());
                record.fields = stub;
                self.format(&record)
                    .ok_or_else(|| self.bad_line("not even its anchor fits in one message"))?
            }
        };
        Ok(Ready {
            seq: expected,
            end,
            message,
        })
    }

    fn format(&self, record: &AuditRecord) -> Option<OutgoingMessage> {
        record
            .to_syslog(self.exporter.payload, PRIORITY, &self.exporter.origin)
            .ok()
            .filter(|m| m.payload.len() <= self.exporter.sender.max_message_bytes)
    }

    fn troubles(&self) -> u64 {
        let stats = self.sender.stats();
        stats.write_failures + stats.disconnects
    }

    /// The highest seq written to a connection, by this run or an earlier one.
    fn written_up_to(&self) -> u64 {
        self.resend_up_to
            .max(self.sender.written().borrow().unwrap_or(0))
    }

    /// Publishes the stats now.
    fn publish(&self) {
        let sender = self.sender.stats();
        self.stats.send_replace(ExportStats {
            head: self.head.max(self.cursor.seq),
            cursor: self.cursor.seq,
            exported: self.exported,
            resent: self.resent,
            connection_failures: self.earlier_failures + connection_failures(&sender),
            last_write: self.last_write,
        });
    }

    /// At each tick: a connection that broke since the last one means records written on it
    /// may be lost, so resend from the cursor; otherwise what was written at the last tick
    /// is confirmed and the cursor moves past it.
    async fn confirm_or_rewind(&mut self) -> Result<(), Error> {
        let troubles = self.troubles();
        if troubles != self.troubles {
            tracing::warn!(
                collector = %self.exporter.sender.address,
                cursor = self.cursor.seq,
                "SIEM export: the connection broke; resending from the cursor"
            );
            return self.rewind();
        }
        if let Some(seq) = self.candidate {
            self.advance(seq).await?;
        }
        // Delivered, not only written: a record left in this host's socket buffer (a
        // collector that stopped reading) is not confirmed, and is resent after the write
        // that times out on it.
        let delivered = *self.sender.delivered().borrow();
        if delivered.is_some() && delivered != self.candidate {
            self.last_write = Some(SystemTime::now());
        }
        self.candidate = delivered;
        Ok(())
    }

    /// Moves the cursor to `seq` (a record written and confirmed); the cursor file is
    /// written on the blocking pool (it is fsynced).
    async fn advance(&mut self, seq: u64) -> Result<(), Error> {
        let mut end = None;
        while let Some(&(s, e)) = self.sent.front() {
            if s > seq {
                break;
            }
            end = Some(e);
            self.sent.pop_front();
        }
        if let Some(offset) = end
            && seq > self.cursor.seq
        {
            let cursor = Cursor {
                seq,
                offset,
                written: self.written_up_to(),
            };
            self.store(cursor).await?;
            self.exported += seq - self.cursor.seq;
            self.cursor = cursor;
            self.cursor_tx.send_replace(seq);
            self.publish();
        }
        Ok(())
    }

    /// Writes `cursor` to the cursor file, on the blocking pool (it is fsynced).
    async fn store(&self, cursor: Cursor) -> Result<(), Error> {
        let path = self.exporter.cursor_file.clone();
        tokio::task::spawn_blocking(move || store_cursor(&path, cursor))
            .await
            .map_err(|e| cursor_error(&self.exporter.cursor_file, e.to_string()))?
    }

    /// Drops the sender (and its queue) and starts over from the cursor with a fresh one.
    fn rewind(&mut self) -> Result<(), Error> {
        let fresh = SyslogSender::start(&self.exporter.sender).map_err(|e| Error::Export {
            collector: self.exporter.sender.address.clone(),
            detail: e.to_string(),
        })?;
        self.resend_up_to = self.written_up_to();
        let old = std::mem::replace(&mut self.sender, fresh);
        self.earlier_failures += connection_failures(&old.stats());
        tokio::spawn(old.shutdown(Duration::ZERO));
        self.next = self.cursor;
        self.ready.clear();
        self.sent.clear();
        self.troubles = 0;
        self.candidate = None;
        Ok(())
    }

    /// On shutdown: waits, until `deadline`, for what is queued to be delivered and then
    /// confirmed (one confirmation period without trouble), and moves the cursor. On a
    /// `graceful` one, the cursor also records what was written and not confirmed.
    async fn flush(mut self, deadline: tokio::time::Instant, graceful: bool) -> Result<(), Error> {
        if let Some(&(last, _)) = self.sent.back() {
            // Delivered, as in the main loop: bytes still in this host's socket buffer (a
            // collector gone silent) are not confirmed by any wait.
            let mut delivered = self.sender.delivered();
            let done = tokio::time::timeout_at(deadline, delivered.wait_for(|d| *d >= Some(last)))
                .await
                .is_ok_and(|r| r.is_ok());
            let confirmed_at = tokio::time::Instant::now() + self.exporter.confirm;
            if done && confirmed_at <= deadline {
                tokio::time::sleep_until(confirmed_at).await;
                if self.troubles() == self.troubles {
                    self.advance(last).await?;
                }
            }
        }
        // Records written and not confirmed go out again at the next run: it counts them as
        // resent.
        let written = self.written_up_to();
        if graceful && written > self.cursor.written.max(self.cursor.seq) {
            let cursor = Cursor {
                written,
                ..self.cursor
            };
            self.store(cursor).await?;
            self.cursor = cursor;
        }
        self.publish();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = self.sender.shutdown(left).await;
        Ok(())
    }
}

/// Connection failures a sender counted: failed attempts, connections closed, failed writes.
fn connection_failures(stats: &riposte_syslog::SenderStats) -> u64 {
    stats.connect_failures + stats.disconnects + stats.write_failures
}

/// Queues `message`, waiting for room; never, without one.
async fn queue(
    sender: &SyslogSender,
    message: Option<OutgoingMessage>,
) -> Result<(), riposte_syslog::SendError> {
    match message {
        Some(message) => sender.send(message).await,
        None => std::future::pending().await,
    }
}

/// Returns when the sink announces a record (an error once the sink is gone); never,
/// without a sink.
async fn announced(
    appended: &mut Option<watch::Receiver<u64>>,
) -> Result<(), watch::error::RecvError> {
    match appended {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

/// Reads one stored exported message (see [`exported_anchor`]): `None` for a line that is
/// not an exported audit record (a collector's file may hold other messages).
pub fn parse_exported(line: &str) -> Option<ExportedAnchor> {
    exported_anchor(line).ok()
}

/// What `verify --against` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportAgainstReport {
    /// Records of the trail whose exported hash matches.
    pub matched: u64,
    /// Records of the trail absent from the export, as ranges of seqs (first, last).
    pub missing: Vec<(u64, u64)>,
    /// Seqs whose exported hash differs from the trail's: the trail was changed after they
    /// were exported (first ones, at most 100).
    pub mismatched: Vec<u64>,
    /// How many seqs mismatch in all.
    pub mismatched_count: u64,
    /// Seqs the export holds beyond the trail's end: records deleted from the trail.
    pub beyond: Option<(u64, u64)>,
    /// Lines of the export that are not exported audit records.
    pub ignored_lines: u64,
    /// Exported messages seen more than once with the same seq (at-least-once duplicates).
    pub duplicates: u64,
    /// Exported records left out because they name another host than the one asked for
    /// (or none).
    pub other_hosts: u64,
}

impl ExportAgainstReport {
    /// Whether the trail contradicts the export (a mismatch or records deleted).
    pub fn is_tampered(&self) -> bool {
        self.mismatched_count > 0 || self.beyond.is_some()
    }
}

impl std::fmt::Display for ExportAgainstReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} records match the export", self.matched)?;
        if self.duplicates > 0 {
            write!(f, " ({} duplicates in the export)", self.duplicates)?;
        }
        if self.other_hosts > 0 {
            write!(
                f,
                " ({} exported records of other hosts left out)",
                self.other_hosts
            )?;
        }
        if let Some(first) = self.mismatched.first() {
            write!(
                f,
                "; MISMATCH: {} records differ from what was exported, the first seq {first} (the trail was changed after the export)",
                self.mismatched_count
            )?;
        }
        if let Some((a, b)) = self.beyond {
            write!(
                f,
                "; the export holds seq {a}..{b}, beyond the trail's end: records were deleted"
            )?;
        }
        if !self.missing.is_empty() {
            let total: u64 = self.missing.iter().map(|(a, b)| b - a + 1).sum();
            let ranges: Vec<String> = self
                .missing
                .iter()
                .take(10)
                .map(|(a, b)| {
                    if a == b {
                        format!("{a}")
                    } else {
                        format!("{a}..{b}")
                    }
                })
                .collect();
            write!(
                f,
                "; {total} records not in the export: {}{}",
                ranges.join(", "),
                if self.missing.len() > 10 { ", ..." } else { "" }
            )?;
        }
        Ok(())
    }
}

/// Notes an exported record's hash under its seq: a second copy with the same hash is a
/// duplicate; with another hash (or `None`, copies that already disagree), the seq's hash
/// becomes `None`, a mismatch whatever the trail holds.
fn note_anchor(
    map: &mut BTreeMap<u64, Option<Sha256Digest>>,
    seq: u64,
    hash: Option<Sha256Digest>,
    duplicates: &mut u64,
) {
    match map.get(&seq) {
        Some(seen) if seen.is_some() && *seen == hash => *duplicates += 1,
        Some(_) => {
            map.insert(seq, None);
        }
        None => {
            map.insert(seq, hash);
        }
    }
}

/// The most host names an error about an export of several hosts lists.
const MAX_HOSTS_NAMED: usize = 16;

/// Checks the trail at `trail` against `export`, a file of exported messages as a collector
/// stores them (one per line): the trail's chain first (with `options`), then each exported
/// record's hash against the trail's record of the same seq. A mismatch or an exported seq
/// beyond the trail is reported as tampering; records not (yet) exported are listed.
///
/// Each host numbers its own trail from 1, so an export holding several hosts' records is
/// only checked for the one `host` names (the exporting host as its records say,
/// `[service.audit.export] hostname`); without `host`, such an export is refused
/// ([`Error::SeveralHosts`]).
pub fn check_against_export(
    trail: &Path,
    export: &Path,
    options: &VerifyOptions,
    host: Option<&str>,
) -> Result<ExportAgainstReport, Error> {
    let report = verify_with(trail, options)?;
    let io = |path: &Path, action: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Io {
            path,
            action,
            source,
        }
    };
    let mut out = ExportAgainstReport::default();
    // seq -> hash, from the export; a seq exported with two hashes is a mismatch by itself.
    let mut exported: BTreeMap<u64, Option<Sha256Digest>> = BTreeMap::new();
    // Records exported before payloads named their host (a collector that keeps payloads
    // alone): this trail's, unless the export names another host.
    let mut unnamed: BTreeMap<u64, Option<Sha256Digest>> = BTreeMap::new();
    let mut hosts = BTreeSet::new();
    let host = host.map(riposte_syslog::format::exported_host_name);
    let mut reader = BufReader::new(File::open(export).map_err(io(export, "open"))?);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .map_err(io(export, "read"))?;
        if n == 0 {
            break;
        }
        let anchor = std::str::from_utf8(&line).ok().and_then(parse_exported);
        let Some(anchor) = anchor else {
            out.ignored_lines += 1;
            continue;
        };
        let hash = Sha256Digest::from_hex(&anchor.chain_hash);
        let Some(named) = anchor.host else {
            note_anchor(&mut unnamed, anchor.seq, hash, &mut out.duplicates);
            continue;
        };
        let other = host.as_ref().is_some_and(|wanted| *wanted != named);
        if hosts.len() <= MAX_HOSTS_NAMED {
            hosts.insert(named);
        }
        if other {
            out.other_hosts += 1;
            continue;
        }
        note_anchor(&mut exported, anchor.seq, hash, &mut out.duplicates);
    }
    let other_named = hosts.iter().any(|h| host.as_ref().is_some_and(|w| w != h));
    if other_named || hosts.len() > 1 {
        out.other_hosts += unnamed.len() as u64;
    } else {
        for (seq, hash) in unnamed {
            note_anchor(&mut exported, seq, hash, &mut out.duplicates);
        }
    }
    let named = || hosts.iter().take(MAX_HOSTS_NAMED).cloned().collect();
    match &host {
        None if hosts.len() > 1 => {
            return Err(Error::SeveralHosts {
                export: export.to_path_buf(),
                hosts: named(),
            });
        }
        // A misspelt name must not pass as "nothing to compare".
        Some(wanted) if exported.is_empty() && out.other_hosts > 0 => {
            return Err(Error::HostNotInExport {
                export: export.to_path_buf(),
                host: wanted.clone(),
                hosts: named(),
            });
        }
        _ => {}
    }
    let last = report.head.map_or(0, |h| h.seq);
    let mut reader = BufReader::new(File::open(trail).map_err(io(trail, "open"))?);
    let mut missing_from: Option<u64> = None;
    for seq in 1..=last {
        line.clear();
        (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .map_err(io(trail, "read"))?;
        // The chain verified: every line is a record, in seq order.
        let record: super::Record = serde_json::from_slice(&line).map_err(|e| Error::Tampered {
            path: trail.to_path_buf(),
            line: seq,
            seq: Some(seq),
            problem: Box::new(super::Tamper::Malformed(e.to_string())),
        })?;
        match exported.get(&seq) {
            None => {
                missing_from.get_or_insert(seq);
                continue;
            }
            Some(hash) if *hash == Some(record.hash) => out.matched += 1,
            Some(_) => {
                out.mismatched_count += 1;
                if out.mismatched.len() < 100 {
                    out.mismatched.push(seq);
                }
            }
        }
        if let Some(from) = missing_from.take() {
            out.missing.push((from, seq - 1));
        }
    }
    if let Some(from) = missing_from {
        out.missing.push((from, last));
    }
    let mut beyond = exported.range(last + 1..).map(|(s, _)| *s);
    if let Some(first) = beyond.next() {
        out.beyond = Some((first, beyond.next_back().unwrap_or(first)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = cursor_path(&dir.path().join("a.jsonl"));
        assert!(path.ends_with("a.jsonl.export-cursor"));
        assert_eq!(read_cursor(&path).unwrap(), 0);
        let cursor = Cursor {
            seq: 7,
            offset: 99,
            written: 9,
        };
        store_cursor(&path, cursor).unwrap();
        assert_eq!(load_cursor(&path).unwrap(), cursor);
        // A cursor written before `written` existed.
        std::fs::write(&path, r#"{"seq":3,"offset":40}"#).unwrap();
        assert_eq!(load_cursor(&path).unwrap().written, 0);
        std::fs::write(&path, "nonsense").unwrap();
        assert!(matches!(read_cursor(&path), Err(Error::Cursor { .. })));
    }
}
