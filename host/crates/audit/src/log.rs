//! Writing the trail: the file log, the in-memory log, and the thread-safe sink.

use super::{
    ChainKey, Entry, Error, FsyncPolicy, GENESIS, Link, MAX_LINE_BYTES, RecordRef, Tamper, decode,
    encode, read_line,
};
use riposte_domain::Sha256Digest;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The sidecar head file of a log: `<log>.head`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".head");
    log.with_file_name(name)
}

/// Size of the head file: the JSON, padded with spaces, then `\n`.
const HEAD_LEN: usize = 128;

/// Reads a head file; `Ok(None)` if there is none or it names nothing (empty, as created on
/// open, or all zero bytes: a power cut hit it between its creation and the fsync of its
/// first write), `Err(detail)` if it is unreadable.
pub(crate) fn read_head(log: &Path) -> Result<Option<RecordRef>, String> {
    let mut text = String::new();
    // A head file is HEAD_LEN bytes: a longer one is read no further than that shows.
    let read = File::open(head_path(log))
        .and_then(|f| f.take(4 * HEAD_LEN as u64).read_to_string(&mut text));
    match read.map(|_| text) {
        Ok(text)
            if text
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .is_empty() =>
        {
            Ok(None)
        }
        Ok(text) => serde_json::from_str(text.trim())
            .map(Some)
            .map_err(|e| format!("head file {}: {e}", head_path(log).display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("head file {}: {e}", head_path(log).display())),
    }
}

/// An append-only, hash-chained audit log file.
///
/// Opening resumes the chain after the last record, after checking that record (and the
/// head file) so that nothing is appended to a damaged or truncated log. It does not check
/// the whole file: that is [`super::verify`]'s job.
pub struct AuditLog {
    path: PathBuf,
    file: File,
    head: File,
    fsync: FsyncPolicy,
    /// The chain's key: records are linked by HMAC-SHA256 under it.
    key: Option<ChainKey>,
    next_seq: u64,
    prev: Sha256Digest,
    /// Records written to the log since its last fsync.
    unsynced: u64,
    /// The head the file should name, not written yet (`Batch`: written once the log is
    /// forced to disk, so that it never names a record a power cut could lose).
    pending_head: Option<RecordRef>,
    /// The head file was written since its last fsync.
    head_unsynced: bool,
    poisoned: bool,
    /// The file's length after our last append; a different length means another process
    /// appended since, and the chain must be resumed from the file's new tail.
    known_len: u64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("next_seq", &self.next_seq)
            .field("prev", &self.prev)
            .field("keyed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating it and its directory if needed) the unkeyed log at `path`.
    pub fn open(path: impl AsRef<Path>, fsync: FsyncPolicy) -> Result<Self, Error> {
        Self::open_keyed(path, fsync, None)
    }

    /// Opens the log at `path`, linking new records by HMAC under `key` when there is one.
    /// A keyed trail is refused without a key ([`Error::KeyRequired`]), and with a key its
    /// last record must authenticate under it. A trail whose records are unkeyed is refused
    /// with a key ([`Error::KeyNotAdopted`]) until the operator adopts the key for it
    /// ([`AuditLog::adopt_key`]): otherwise a keyed trail rewritten whole without the key, as
    /// an unkeyed one, would be taken up and go on keyed as if nothing had happened.
    pub fn open_keyed(
        path: impl AsRef<Path>,
        fsync: FsyncPolicy,
        key: Option<ChainKey>,
    ) -> Result<Self, Error> {
        Self::open_with(path.as_ref(), fsync, key, false)
    }

    /// Adopts `key` for the unkeyed trail at `path` (an operator's decision, `riposte audit
    /// adopt-key`): appends a keyed `audit-key-adopted` record, which names how many
    /// records came before it unkeyed, and forces it to disk. From then on the trail opens
    /// with the key; its unkeyed records stay anchored by the first keyed one's link.
    pub fn adopt_key(path: impl AsRef<Path>, key: ChainKey) -> Result<RecordRef, Error> {
        let mut log = Self::open_with(path.as_ref(), FsyncPolicy::EveryRecord, Some(key), true)?;
        let unkeyed = log.next_seq - 1;
        let mut entry = Entry::new(
            riposte_domain::now_ms(),
            crate::Call::event("audit-key-adopted"),
        );
        entry.result =
            crate::Redacted::from_value(serde_json::json!({ "unkeyed_records": unkeyed }));
        let r = log.append(&entry)?;
        log.sync()?;
        Ok(r)
    }

    fn open_with(
        path: &Path,
        fsync: FsyncPolicy,
        key: Option<ChainKey>,
        adopt: bool,
    ) -> Result<Self, Error> {
        let path = path.to_path_buf();
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| Error::Io {
                path,
                action,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("create its directory"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open"))?;
        // Under the file's lock, so that another writer's append cannot fall between reading
        // the last record and the size: both must describe the same file.
        file.lock().map_err(io("lock"))?;
        let read = last_record(&path, &mut file, key.as_ref())
            .and_then(|tail| Ok((tail, file.metadata().map_err(io("read the size of"))?.len())));
        let _ = file.unlock();
        let (tail, known_len) = read?;
        match tail {
            Some((r, Link::Sha256)) if key.is_some() && !adopt => {
                return Err(Error::KeyNotAdopted {
                    path: path.clone(),
                    records: r.seq,
                });
            }
            Some((_, Link::HmacSha256)) if adopt => {
                return Err(Error::AlreadyKeyed { path: path.clone() });
            }
            _ => {}
        }
        let last = tail.map(|(r, _)| r);
        // The last record's line number, counted only for a message: the file ends with it.
        let corrupt = |detail: String| match count_lines(&path, u64::MAX) {
            Ok(line) => Error::CorruptTail {
                path: path.clone(),
                line,
                detail,
            },
            Err(e) => e,
        };
        match read_head(&path) {
            Err(detail) => return Err(corrupt(detail)),
            Ok(Some(head)) => {
                let rec = last.unwrap_or(RecordRef {
                    seq: 0,
                    hash: GENESIS,
                });
                if head.seq > rec.seq {
                    return Err(corrupt(format!(
                        "the log ends at seq {} but its head file records seq {}: records were deleted from the end",
                        rec.seq, head.seq
                    )));
                }
                if head.seq == rec.seq && head.hash != rec.hash {
                    return Err(corrupt(format!(
                        "the last record's hash {} differs from the head file's {}",
                        rec.hash, head.hash
                    )));
                }
            }
            Ok(None) => {}
        }
        let head = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(head_path(&path))
            .map_err(io("open the head file"))?;
        let (next_seq, prev) = match last {
            Some(r) => (r.seq + 1, r.hash),
            None => (1, GENESIS),
        };
        Ok(Self {
            path,
            file,
            head,
            fsync,
            key,
            next_seq,
            prev,
            unsynced: 0,
            pending_head: None,
            head_unsynced: false,
            poisoned: false,
            known_len,
        })
    }

    /// Holds the file's exclusive lock for one append, so that several processes (the
    /// service and an operator's `approve` or `undo`) extend one chain in turn. If another
    /// process appended since our last write, the chain resumes from its record.
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                path,
                action,
                source,
            }
        };
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        self.file.lock().map_err(io("lock", &self.path))?;
        let result = (|| {
            let len = self
                .file
                .metadata()
                .map_err(io("read the size of", &self.path))?
                .len();
            if len != self.known_len {
                let path = self.path.clone();
                let last = last_record(&path, &mut self.file, self.key.as_ref())?.map(|(r, _)| r);
                let ours = self.next_seq - 1;
                // Other writers only append: a shorter file, or a tail before our last
                // record, means records were cut off. Extending the chain from there would
                // hide it (the head file would follow); refuse until an operator looks.
                let cut = len < self.known_len
                    || last.map_or(0, |r| r.seq) < ours
                    || !self.continues_at_known_len(ours);
                if cut {
                    self.poisoned = true;
                    return Err(Error::CorruptTail {
                        line: count_lines(&path, u64::MAX)?,
                        detail: format!(
                            "the file is {len} bytes and ends at seq {}, where this writer left it at {} bytes and seq {ours}: records were deleted from the end",
                            last.map_or(0, |r| r.seq),
                            self.known_len
                        ),
                        path,
                    });
                }
                if let Some(r) = last {
                    self.next_seq = r.seq + 1;
                    self.prev = r.hash;
                }
                self.known_len = len;
            }
            // `write` counts what it appends, so the size needs no second look while the
            // lock is held (a failed write poisons the log, so a wrong count is never used).
            f(self)
        })();
        let _ = self.file.unlock();
        result
    }

    /// Whether the record at the offset where this writer's last write ended is the one after
    /// `ours` (the last seq this writer knows) and links to it: another writer appended, and
    /// did not cut the file and grow it again.
    fn continues_at_known_len(&mut self, ours: u64) -> bool {
        let mut line = Vec::new();
        let read = self
            .file
            .seek(SeekFrom::Start(self.known_len))
            .and_then(|_| read_line(&mut std::io::BufReader::new(&mut self.file), &mut line));
        if !matches!(read, Ok(Some(_))) {
            return false;
        }
        let text = String::from_utf8_lossy(&line);
        decode(text.trim_end_matches('\n'), self.key.as_ref())
            .is_ok_and(|next| next.seq == ours + 1 && next.prev == self.prev)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last record written (or found on open), if any.
    pub fn head(&self) -> Option<RecordRef> {
        (self.next_seq > 1).then_some(RecordRef {
            seq: self.next_seq - 1,
            hash: self.prev,
        })
    }

    /// Appends one record, fsyncs as the policy says, and updates the head file.
    pub fn append(&mut self, entry: &Entry) -> Result<RecordRef, Error> {
        self.locked(|log| log.append_unlocked(entry))
    }

    fn append_unlocked(&mut self, entry: &Entry) -> Result<RecordRef, Error> {
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        let (line, hash) = encode(self.next_seq, self.prev, entry, self.key.as_ref())?;
        let result = self.write(
            line.as_bytes(),
            RecordRef {
                seq: self.next_seq,
                hash,
            },
        );
        if result.is_err() {
            self.poisoned = true;
        }
        result?;
        let r = RecordRef {
            seq: self.next_seq,
            hash,
        };
        self.next_seq += 1;
        self.prev = hash;
        Ok(r)
    }

    fn write(&mut self, line: &[u8], r: RecordRef) -> Result<(), Error> {
        self.file
            .write_all(line)
            .map_err(|source| self.io_error("append", source))?;
        self.known_len += line.len() as u64;
        self.unsynced += 1;
        match self.fsync {
            FsyncPolicy::EveryRecord => {
                self.file
                    .sync_data()
                    .map_err(|source| self.io_error("fsync", source))?;
                self.unsynced = 0;
                self.write_head(r)
            }
            FsyncPolicy::Batch => {
                self.pending_head = Some(r);
                Ok(())
            }
            // The head file names only records on disk (the export sends no further), so
            // between syncs it waits, as under `Batch`.
            FsyncPolicy::Interval(n) if self.unsynced >= n.max(1) => {
                self.pending_head = Some(r);
                self.sync()
            }
            FsyncPolicy::Interval(_) => {
                self.pending_head = Some(r);
                Ok(())
            }
            FsyncPolicy::Never => self.write_head(r),
        }
    }

    fn write_head(&mut self, r: RecordRef) -> Result<(), Error> {
        let mut head = serde_json::to_string(&r).map_err(|e| Error::Encode(e.to_string()))?;
        while head.len() < HEAD_LEN - 1 {
            head.push(' ');
        }
        head.push('\n');
        self.head
            .seek(SeekFrom::Start(0))
            .and_then(|_| self.head.write_all(head.as_bytes()))
            .map_err(|source| self.io_error("write the head file", source))?;
        self.head_unsynced = true;
        Ok(())
    }

    fn io_error(&self, action: &'static str, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }

    /// Forces everything written so far to disk: the log, then the head file.
    pub fn sync(&mut self) -> Result<(), Error> {
        if let Err(source) = self.file.sync_data() {
            // After a failed fsync the kernel may have dropped the dirty pages and a retry
            // reports success: what was written is in an unknown state, so stop here.
            self.poisoned = true;
            return Err(self.io_error("fsync", source));
        }
        self.unsynced = 0;
        if let Some(r) = self.pending_head.take() {
            let len = self
                .file
                .metadata()
                .map_err(|source| self.io_error("read the size of", source))?
                .len();
            // Another process appended since: the head file names its record, a later one.
            if len == self.known_len {
                self.write_head(r)?;
            }
        }
        self.sync_head()
    }

    fn sync_head(&mut self) -> Result<(), Error> {
        if self.head_unsynced {
            self.head
                .sync_data()
                .map_err(|source| self.io_error("fsync the head file", source))?;
            self.head_unsynced = false;
        }
        Ok(())
    }

    /// A durability barrier: under [`FsyncPolicy::Batch`], forces the records written since
    /// the last barrier to disk; under the other policies the records follow their own
    /// schedule, and only the head file (written, not forced, with each sync) is forced.
    pub fn barrier(&mut self) -> Result<(), Error> {
        // A writer that failed cannot vouch for what it wrote: no barrier passes.
        if self.poisoned {
            return Err(Error::Poisoned {
                path: self.path.clone(),
            });
        }
        // Under N, a barrier forces the records since the last group too: the head file
        // names only records on disk, and the export must not wait for N more.
        let groups = matches!(self.fsync, FsyncPolicy::Batch | FsyncPolicy::Interval(_));
        if groups && self.needs_sync() {
            return self.sync();
        }
        self.sync_head()
    }

    /// Records written to the log and not yet forced to disk.
    pub fn unsynced_records(&self) -> u64 {
        self.unsynced
    }

    fn needs_sync(&self) -> bool {
        self.unsynced > 0 || self.pending_head.is_some() || self.head_unsynced
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if self.needs_sync() && !self.poisoned {
            let _ = self.sync();
        }
    }
}

/// Finds and checks the last record of the file: its seq and hash. A keyed record must
/// authenticate under `key`, and cannot be continued without one.
fn last_record(
    path: &Path,
    file: &mut File,
    key: Option<&ChainKey>,
) -> Result<Option<(RecordRef, Link)>, Error> {
    let io = |action: &'static str| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let len = file.seek(SeekFrom::End(0)).map_err(io("seek"))?;
    if len == 0 {
        return Ok(None);
    }
    // Read backwards until the tail holds the whole last line.
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    let mut chunk = 8192u64;
    let start_of_last = loop {
        let step = chunk.min(pos);
        pos -= step;
        let mut buf = vec![0u8; step as usize];
        file.seek(SeekFrom::Start(pos)).map_err(io("seek"))?;
        file.read_exact(&mut buf).map_err(io("read"))?;
        buf.extend_from_slice(&tail);
        tail = buf;
        // Skip the final byte (the last line's own newline).
        let search = &tail[..tail.len() - 1];
        if let Some(i) = search.iter().rposition(|b| *b == b'\n') {
            break pos + i as u64 + 1;
        }
        if pos == 0 {
            break 0;
        }
        if tail.len() as u64 > MAX_LINE_BYTES {
            return Err(Error::CorruptTail {
                path: path.to_path_buf(),
                line: count_lines(path, u64::MAX)?,
                detail: format!(
                    "the last line is longer than {} bytes, more than any record",
                    MAX_LINE_BYTES
                ),
            });
        }
        chunk = chunk.saturating_mul(2);
    };
    let offset = (start_of_last - pos) as usize;
    let last = &tail[offset..];
    let corrupt = |detail: String| -> Result<Option<(RecordRef, Link)>, Error> {
        Err(Error::CorruptTail {
            path: path.to_path_buf(),
            line: count_lines(path, start_of_last)? + 1,
            detail,
        })
    };
    if last.last() != Some(&b'\n') {
        return corrupt(
            "the last line is incomplete (no newline): the file was truncated or a write was interrupted"
                .into(),
        );
    }
    let text = match std::str::from_utf8(&last[..last.len() - 1]) {
        Ok(t) => t,
        Err(_) => return corrupt("the last line is not UTF-8".into()),
    };
    match decode(text, key) {
        Ok(d) if d.link == Link::HmacSha256 && key.is_none() => Err(Error::KeyRequired {
            path: path.to_path_buf(),
        }),
        Ok(d) => Ok(Some((
            RecordRef {
                seq: d.seq,
                hash: d.hash,
            },
            d.link,
        ))),
        Err(Tamper::MacMismatch) => corrupt(
            "the last record does not authenticate under the configured key: it was modified, or key_file is not this trail's key"
                .into(),
        ),
        Err(t @ (Tamper::Malformed(_) | Tamper::HashMismatch { .. })) => {
            corrupt(format!("the last record is damaged: {t}"))
        }
        Err(other) => corrupt(other.to_string()),
    }
}

/// The lines that end in the file's first `upto` bytes (all of them for `u64::MAX`): a line
/// number for error messages, so only counted when one is needed.
fn count_lines(path: &Path, upto: u64) -> Result<u64, Error> {
    let io = |action: &'static str| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    let mut f = File::open(path).map_err(io("read"))?;
    let mut count = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let mut read = 0u64;
    while read < upto {
        let n = f.read(&mut buf).map_err(io("read"))?;
        if n == 0 {
            break;
        }
        let take = (n as u64).min(upto - read) as usize;
        count += buf[..take].iter().filter(|b| **b == b'\n').count() as u64;
        read += n as u64;
    }
    Ok(count)
}

/// An audit log kept in memory: for tests and benchmarks. Same encoding and chain as the file.
#[derive(Debug)]
pub struct MemoryLog {
    lines: Vec<String>,
    prev: Sha256Digest,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self {
            lines: Vec::new(),
            prev: GENESIS,
        }
    }
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one record.
    pub fn append(&mut self, entry: &Entry) -> Result<RecordRef, Error> {
        let seq = self.lines.len() as u64 + 1;
        let (line, hash) = encode(seq, self.prev, entry, None)?;
        self.lines.push(line);
        self.prev = hash;
        Ok(RecordRef { seq, hash })
    }

    /// The lines written, each with its `\n`.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The last record, if any.
    pub fn head(&self) -> Option<RecordRef> {
        (!self.lines.is_empty()).then_some(RecordRef {
            seq: self.lines.len() as u64,
            hash: self.prev,
        })
    }
}

enum Backend {
    File(AuditLog),
    Memory(MemoryLog),
}

/// A log shared by concurrent writers (`Arc<AuditSink>`): appends are serialized, so seqs
/// and the chain follow the order in which appends complete.
pub struct AuditSink {
    inner: Mutex<Backend>,
    /// The seq of the last record appended through this sink (for the exporter).
    appended: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").finish_non_exhaustive()
    }
}

impl AuditSink {
    /// Opens an unkeyed file log (see [`AuditLog::open`]).
    pub fn open(path: impl AsRef<Path>, fsync: FsyncPolicy) -> Result<Self, Error> {
        AuditLog::open(path, fsync).map(Self::file)
    }

    /// Wraps an open file log.
    pub fn file(log: AuditLog) -> Self {
        Self::with(Backend::File(log))
    }

    /// An in-memory log.
    pub fn memory() -> Self {
        Self::with(Backend::Memory(MemoryLog::new()))
    }

    fn with(backend: Backend) -> Self {
        let head = match &backend {
            Backend::File(log) => log.head(),
            Backend::Memory(log) => log.head(),
        };
        Self {
            inner: Mutex::new(backend),
            appended: tokio::sync::watch::Sender::new(head.map_or(0, |h| h.seq)),
        }
    }

    /// The seq of the last record appended through this sink (or found on open); changes
    /// with every append. Records other processes append are not announced here.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backend> {
        // A panic while holding the lock cannot leave a half-written record: the file
        // backend poisons itself on a failed write.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one record.
    pub fn append(&self, entry: &Entry) -> Result<RecordRef, Error> {
        let r = match &mut *self.lock() {
            Backend::File(log) => log.append(entry),
            Backend::Memory(log) => log.append(entry),
        }?;
        self.appended.send_replace(r.seq);
        Ok(r)
    }

    /// The last record, if any.
    pub fn head(&self) -> Option<RecordRef> {
        match &*self.lock() {
            Backend::File(log) => log.head(),
            Backend::Memory(log) => log.head(),
        }
    }

    /// For an in-memory sink, the lines written (each with its `\n`); empty for a file.
    pub fn memory_lines(&self) -> Vec<String> {
        match &*self.lock() {
            Backend::File(_) => Vec::new(),
            Backend::Memory(log) => log.lines().to_vec(),
        }
    }

    /// Forces a file log to disk; nothing for memory.
    pub fn sync(&self) -> Result<(), Error> {
        match &mut *self.lock() {
            Backend::File(log) => log.sync(),
            Backend::Memory(_) => Ok(()),
        }
    }

    /// A durability barrier (see [`AuditLog::barrier`]); nothing for memory.
    pub fn barrier(&self) -> Result<(), Error> {
        match &mut *self.lock() {
            Backend::File(log) => log.barrier(),
            Backend::Memory(_) => Ok(()),
        }
    }

    /// Records written and not yet forced to disk (always 0 for memory).
    pub fn unsynced_records(&self) -> u64 {
        match &*self.lock() {
            Backend::File(log) => log.unsynced_records(),
            Backend::Memory(_) => 0,
        }
    }
}
