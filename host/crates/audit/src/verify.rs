//! Checking and reading the trail.

use super::log::read_head;
use super::{ChainKey, DecisionKind, Error, GENESIS, Link, Record, RecordRef, decode};
use crate::{MAX_LINE_BYTES, read_line};
use riposte_domain::{MalopId, PluginName, Sha256Digest};
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// A line longer than any record the writer makes: read no further.
fn line_too_long() -> Tamper {
    Tamper::Malformed(format!(
        "a line longer than {MAX_LINE_BYTES} bytes, more than any record: not read"
    ))
}

/// What is wrong with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Not a record: bad JSON, unknown or missing fields, no hash at the end.
    Malformed(String),
    /// The stored hash is not the hash of the record: the record was edited.
    HashMismatch {
        /// The hash written in the record.
        stored: Sha256Digest,
        /// The hash of what the record now says.
        computed: Sha256Digest,
    },
    /// `prev` is not the previous record's hash: a record before it was edited (and its
    /// hash recomputed), removed or moved.
    BrokenChain {
        /// The previous record's hash (or the genesis value).
        expected: Sha256Digest,
        /// What this record's `prev` says.
        found: Sha256Digest,
    },
    /// `seq` is not the next number: records were deleted (gap) or reordered.
    SeqOutOfOrder {
        /// The seq due here.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// A keyed record whose HMAC does not verify under the given key: it was modified (its
    /// link recomputed without the key), or the key is not this trail's.
    MacMismatch,
    /// An unkeyed (`sha256`) record after a keyed one: the records from here on were
    /// rewritten by someone without the key.
    Downgrade {
        /// The first keyed record's seq.
        keyed_from: u64,
    },
    /// A key was given but no record is keyed: the whole trail was rewritten with plain
    /// sha256 links, or it was never keyed (then verify it without `--key`).
    NotKeyed,
    /// The last line has no newline: the file was cut off mid-record.
    Incomplete,
    /// The log ends before the record the head file (or an anchor) names: trailing records
    /// were deleted.
    Truncated {
        /// The last seq in the log.
        last: u64,
        /// The seq that should be there.
        expected: u64,
        /// Who says so: `head file` or `anchor`.
        source: &'static str,
    },
    /// The record at the head file's (or anchor's) seq has another hash.
    HeadMismatch {
        /// The hash the head file or anchor expects.
        expected: Sha256Digest,
        /// The record's hash.
        found: Sha256Digest,
        /// `head file` or `anchor`.
        source: &'static str,
    },
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(detail) => write!(f, "not a valid audit record: {detail}"),
            Self::HashMismatch { stored, computed } => write!(
                f,
                "the record was modified: its content hashes to {computed}, but it says {stored}"
            ),
            Self::BrokenChain { expected, found } => write!(
                f,
                "the chain is broken: prev is {found} but the previous record's hash is {expected} (a record before it was edited, deleted or moved)"
            ),
            Self::SeqOutOfOrder { expected, found } if found > expected => write!(
                f,
                "seq {found} where {expected} was due: record{} {expected}{} deleted or moved further down",
                if found - expected > 1 { "s" } else { "" },
                if found - expected > 1 {
                    format!("..{} were", found - 1)
                } else {
                    " was".to_string()
                }
            ),
            Self::SeqOutOfOrder { expected, found } => write!(
                f,
                "seq {found} where {expected} was due: records were reordered or duplicated"
            ),
            Self::MacMismatch => f.write_str(
                "the record's HMAC does not verify under the given key: it was modified (and its link recomputed without the key), or the key is not this trail's",
            ),
            Self::Downgrade { keyed_from } => write!(
                f,
                "an unkeyed (sha256) record after keyed ones (keyed from seq {keyed_from}): the records from here on were rewritten without the key"
            ),
            Self::NotKeyed => f.write_str(
                "a key was given but the trail has no keyed record: it was rewritten with plain sha256 links from its first record, or it was never keyed (verify it without --key)",
            ),
            Self::Incomplete => f.write_str(
                "the last line is incomplete (no newline): the file was truncated mid-record",
            ),
            Self::Truncated {
                last,
                expected,
                source,
            } => write!(
                f,
                "the log ends at seq {last} but the {source} names seq {expected}: trailing records were deleted"
            ),
            Self::HeadMismatch {
                expected,
                found,
                source,
            } => write!(
                f,
                "the {source} expects hash {expected} here but the record's hash is {found}"
            ),
        }
    }
}

/// A record known to be in the log (the final seq and hash of an earlier verify, kept
/// somewhere the log's writer cannot change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The record's seq.
    pub seq: u64,
    /// Its hash.
    pub hash: Sha256Digest,
}

/// How to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// A record the log must contain unchanged.
    pub anchor: Option<Anchor>,
    /// Check the sidecar head file when there is one (default true).
    pub head_file: bool,
    /// The chain's key: keyed records are authenticated with it, and the trail must be keyed.
    pub key: Option<ChainKey>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            anchor: None,
            head_file: true,
            key: None,
        }
    }
}

/// How the verified chain is linked, and what that proves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keying {
    /// Every record is linked by plain sha256: a consistent rewrite of the whole file (or of
    /// its end) by anyone with write access would not be detected; only anchors held
    /// elsewhere (an export, `--expect-seq`) catch it.
    Unkeyed,
    /// Keyed (HMAC-SHA256) from seq `from` on, every keyed link verified with the key.
    Verified {
        /// The first keyed record (records before it are unkeyed, from before a key was
        /// configured).
        from: u64,
    },
    /// Keyed from seq `from` on, but no key was given: only the structure (seq, prev links)
    /// was checked, not who wrote the links.
    Unchecked {
        /// The first keyed record.
        from: u64,
    },
}

impl fmt::Display for Keying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let before = |f: &mut fmt::Formatter<'_>, from: u64| {
            if from > 1 {
                write!(f, " (records 1..{} unkeyed, from before the key)", from - 1)
            } else {
                Ok(())
            }
        };
        match *self {
            Self::Unkeyed => f.write_str(
                "unkeyed chain (sha256): WARNING a consistent rewrite of the whole file would not be detected; compare it with an export (--against) or configure [service.audit] key_file",
            ),
            Self::Verified { from } => {
                write!(f, "keyed chain (hmac-sha256) verified with the key from seq {from}")?;
                before(f, from)
            }
            Self::Unchecked { from } => {
                write!(
                    f,
                    "keyed chain (hmac-sha256) from seq {from}, NOT authenticated: no key given, only the structure was checked (pass --key)"
                )?;
                before(f, from)
            }
        }
    }
}

/// What the head file said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadFileCheck {
    /// Not checked (disabled, or reading from a stream).
    NotChecked,
    /// There is none.
    Absent,
    /// It names the last record.
    Matches,
    /// It names an earlier record, which matches: the writer stopped between writing a
    /// record and updating the head file, or records were appended by someone else.
    Behind {
        /// The seq it names.
        seq: u64,
    },
}

/// A log that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// How many records.
    pub records: u64,
    /// The last record: keep it elsewhere as an [`Anchor`].
    pub head: Option<RecordRef>,
    /// The head file's verdict.
    pub head_file: HeadFileCheck,
    /// How the chain is linked and whether its links were authenticated.
    pub keying: Keying,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.head {
            None => write!(f, "ok: empty log")?,
            Some(head) => write!(
                f,
                "ok: {} records, chain intact; head seq {} hash {}",
                self.records, head.seq, head.hash
            )?,
        }
        match self.head_file {
            HeadFileCheck::NotChecked => Ok(()),
            HeadFileCheck::Absent => write!(
                f,
                " (no head file: deletion of trailing records cannot be ruled out without an anchor)"
            ),
            HeadFileCheck::Matches => write!(f, " (head file agrees)"),
            HeadFileCheck::Behind { seq } => write!(
                f,
                " (head file names seq {seq}, which matches; later records were appended after it)"
            ),
        }?;
        if self.head.is_some() {
            write!(f, "; {}", self.keying)?;
        }
        Ok(())
    }
}

/// Verifies the log at `path` with default options (head file checked if present).
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, Error> {
    verify_with(path, &VerifyOptions::default())
}

/// Verifies the log at `path`.
pub fn verify_with(path: impl AsRef<Path>, options: &VerifyOptions) -> Result<VerifyReport, Error> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        action: "open",
        source,
    })?;
    let head = if options.head_file {
        read_head(path).map_err(|detail| Error::Tampered {
            path: path.to_path_buf(),
            line: 0,
            seq: None,
            problem: Box::new(Tamper::Malformed(detail)),
        })?
    } else {
        None
    };
    let mut checks = Vec::new();
    if let Some(h) = head {
        checks.push((
            Anchor {
                seq: h.seq,
                hash: h.hash,
            },
            "head file",
        ));
    }
    if let Some(a) = options.anchor {
        checks.push((a, "anchor"));
    }
    let mut report = scan(path, BufReader::new(file), &checks, options.key.as_ref())?;
    report.head_file = match (options.head_file, head) {
        (false, _) => HeadFileCheck::NotChecked,
        (true, None) => HeadFileCheck::Absent,
        (true, Some(h)) if Some(h) == report.head => HeadFileCheck::Matches,
        (true, Some(h)) => HeadFileCheck::Behind { seq: h.seq },
    };
    Ok(report)
}

/// Verifies a log read from a stream (no head file); keyed records are authenticated with
/// `key` when given.
pub fn verify_reader(
    reader: impl BufRead,
    anchor: Option<Anchor>,
    key: Option<&ChainKey>,
) -> Result<VerifyReport, Error> {
    let checks: Vec<_> = anchor.into_iter().map(|a| (a, "anchor")).collect();
    scan(Path::new("<stream>"), reader, &checks, key)
}

fn scan(
    path: &Path,
    mut reader: impl BufRead,
    checks: &[(Anchor, &'static str)],
    key: Option<&ChainKey>,
) -> Result<VerifyReport, Error> {
    let bad = |line: u64, seq: Option<u64>, problem: Tamper| Error::Tampered {
        path: path.to_path_buf(),
        line,
        seq,
        problem: Box::new(problem),
    };
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut prev = GENESIS;
    let mut head: Option<RecordRef> = None;
    let mut keyed_from: Option<u64> = None;
    loop {
        let read = read_line(&mut reader, &mut buf).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            action: "read",
            source,
        })?;
        if read == Some(0) {
            break;
        }
        line_no += 1;
        let expected_seq = head.map_or(1, |h| h.seq + 1);
        if read.is_none() {
            return Err(bad(line_no, Some(expected_seq), line_too_long()));
        }
        if buf.last() != Some(&b'\n') {
            return Err(bad(line_no, Some(expected_seq), Tamper::Incomplete));
        }
        buf.pop();
        let text = std::str::from_utf8(&buf).map_err(|_| {
            bad(
                line_no,
                Some(expected_seq),
                Tamper::Malformed("not UTF-8".into()),
            )
        })?;
        let record = match decode(text, key) {
            Ok(r) => r,
            Err(problem) => {
                // Name the record by the seq it claims, if it can be read at all.
                let seq = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(|s| s.as_u64()))
                    .or(Some(expected_seq));
                return Err(bad(line_no, seq, problem));
            }
        };
        if record.seq != expected_seq {
            return Err(bad(
                line_no,
                Some(record.seq),
                Tamper::SeqOutOfOrder {
                    expected: expected_seq,
                    found: record.seq,
                },
            ));
        }
        if record.prev != prev {
            return Err(bad(
                line_no,
                Some(record.seq),
                Tamper::BrokenChain {
                    expected: prev,
                    found: record.prev,
                },
            ));
        }
        match (record.link, keyed_from) {
            (Link::HmacSha256, None) => keyed_from = Some(record.seq),
            (Link::Sha256, Some(keyed_from)) => {
                return Err(bad(
                    line_no,
                    Some(record.seq),
                    Tamper::Downgrade { keyed_from },
                ));
            }
            _ => {}
        }
        for (anchor, source) in checks {
            if anchor.seq == record.seq && anchor.hash != record.hash {
                return Err(bad(
                    line_no,
                    Some(record.seq),
                    Tamper::HeadMismatch {
                        expected: anchor.hash,
                        found: record.hash,
                        source,
                    },
                ));
            }
        }
        prev = record.hash;
        head = Some(RecordRef {
            seq: record.seq,
            hash: record.hash,
        });
    }
    let last = head.map_or(0, |h| h.seq);
    for (anchor, source) in checks {
        if anchor.seq > last {
            return Err(bad(
                line_no + 1,
                Some(last + 1),
                Tamper::Truncated {
                    last,
                    expected: anchor.seq,
                    source,
                },
            ));
        }
    }
    let keying = match (keyed_from, key) {
        (None, Some(_)) if last > 0 => return Err(bad(1, Some(1), Tamper::NotKeyed)),
        (None, _) => Keying::Unkeyed,
        (Some(from), Some(_)) => Keying::Verified { from },
        (Some(from), None) => Keying::Unchecked { from },
    };
    Ok(VerifyReport {
        records: last,
        head,
        head_file: HeadFileCheck::NotChecked,
        keying,
    })
}

/// Which records `show` yields; `None` fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this plugin's records.
    pub plugin: Option<PluginName>,
    /// Only records about this Malop.
    pub malop: Option<MalopId>,
    /// Only records with this decision.
    pub decision: Option<DecisionKind>,
}

impl Filter {
    /// Whether `record` passes.
    pub fn matches(&self, record: &Record) -> bool {
        self.plugin
            .as_ref()
            .is_none_or(|p| record.plugin.as_ref() == Some(p))
            && self
                .malop
                .as_ref()
                .is_none_or(|m| record.malop.as_ref() == Some(m))
            && self
                .decision
                .is_none_or(|d| record.decision.as_ref().map(|r| r.kind) == Some(d))
    }
}

/// The records of a log that pass a filter, in order (see [`show`]).
pub struct Show {
    path: PathBuf,
    reader: BufReader<File>,
    filter: Filter,
    line: u64,
    buf: Vec<u8>,
    /// A line too long to read ended the listing.
    ended: bool,
}

impl Iterator for Show {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.ended {
                return None;
            }
            match read_line(&mut self.reader, &mut self.buf) {
                Ok(Some(0)) => return None,
                Ok(None) => {
                    self.ended = true;
                    return Some(Err(Error::Tampered {
                        path: self.path.clone(),
                        line: self.line + 1,
                        seq: None,
                        problem: Box::new(line_too_long()),
                    }));
                }
                Ok(Some(_)) => {}
                Err(source) => {
                    return Some(Err(Error::Io {
                        path: self.path.clone(),
                        action: "read",
                        source,
                    }));
                }
            }
            self.line += 1;
            let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            let record: Record = match serde_json::from_slice(line) {
                Ok(r) => r,
                Err(e) => {
                    return Some(Err(Error::Tampered {
                        path: self.path.clone(),
                        line: self.line,
                        seq: None,
                        problem: Box::new(Tamper::Malformed(e.to_string())),
                    }));
                }
            };
            if self.filter.matches(&record) {
                return Some(Ok(record));
            }
        }
    }
}

/// Reads the records of the log at `path` that pass `filter`. Does not verify the chain
/// (use [`verify`] for that); malformed lines come out as errors.
pub fn show(path: impl AsRef<Path>, filter: Filter) -> Result<Show, Error> {
    let path = path.as_ref().to_path_buf();
    let file = File::open(&path).map_err(|source| Error::Io {
        path: path.clone(),
        action: "open",
        source,
    })?;
    Ok(Show {
        path,
        reader: BufReader::new(file),
        filter,
        line: 0,
        buf: Vec::new(),
        ended: false,
    })
}
