//! The `riposte audit verify` and `riposte audit show` commands, ready for the CLI to mount.

use super::{
    Anchor, ChainKey, DecisionKind, Filter, Record, VerifyOptions, check_against_export, show,
    verify_with,
};
use anyhow::Context as _;
use riposte_domain::{MalopId, PluginName, Sha256Digest, TimestampMs};
use std::io::Write;
use std::path::PathBuf;

/// `riposte audit verify <file>`: checks the chain; fails naming the first bad record.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditVerifyArgs {
    /// The audit logs (JSON lines): one, or every host's of a fleet (each is its own chain).
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Require the record with this seq to be present with `--expect-hash` (an anchor kept
    /// from an earlier verify).
    #[arg(long, requires = "expect_hash")]
    pub expect_seq: Option<u64>,
    /// The hash the `--expect-seq` record must have.
    #[arg(long, requires = "expect_seq")]
    pub expect_hash: Option<String>,
    /// Ignore the sidecar head file (`<file>.head`).
    #[arg(long)]
    pub no_head_file: bool,
    /// The chain's key file (`[service.audit] key_file`): keyed links are authenticated
    /// with it, and the trail must be keyed. Without it a keyed chain is only checked for
    /// structure, and the report says so.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Also check the trail against a SIEM export (the exported messages as the collector
    /// stored them, one per line): every exported record's hash must match the trail's
    /// record of the same seq; records missing from the export are listed.
    #[arg(long, value_name = "EXPORT")]
    pub against: Option<PathBuf>,
    /// With --against: check only the exported records of this host (as they name it:
    /// `[service.audit.export] hostname`, else the machine's name), for a SIEM that
    /// collects several hosts' trails.
    #[arg(long, value_name = "NAME", requires = "against")]
    pub host: Option<String>,
}

/// `riposte audit keygen <file>`: makes a new chain key.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditKeygenArgs {
    /// Where to write the key (must not exist; keep it outside the audit directory).
    pub file: PathBuf,
}

/// `riposte audit adopt-key <trail> --key <file>`: keys an unkeyed trail from its next record.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditAdoptKeyArgs {
    /// The unkeyed trail (`[service.audit] path`).
    pub trail: PathBuf,
    /// The key to link its records by from now on (`[service.audit] key_file`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
}

/// Runs `audit adopt-key`: checks the unkeyed chain, then appends the keyed record that
/// adopts the key for it.
pub fn run_adopt_key(args: &AuditAdoptKeyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let key = ChainKey::load(&args.key)?;
    let report = verify_with(&args.trail, &VerifyOptions::default())?;
    let adopted = crate::AuditLog::adopt_key(&args.trail, key)?;
    writeln!(
        out,
        "{}: {} unkeyed records verified; keyed from seq {} on (the audit-key-adopted record, hash {}); keep this line with the key",
        args.trail.display(),
        report.records,
        adopted.seq,
        adopted.hash
    )?;
    Ok(())
}

/// Runs `audit keygen`: writes 32 random bytes, mode 0600, to a new file.
pub fn run_keygen(args: &AuditKeygenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    ChainKey::generate(&args.file)?;
    writeln!(
        out,
        "wrote a new audit chain key to {} (mode 0600); set [service.audit] key_file to it",
        args.file.display()
    )?;
    Ok(())
}

/// Runs `audit verify`: prints the report to `out`, or returns the error naming the first
/// bad record (the CLI exits non-zero).
pub fn run_verify(args: &AuditVerifyArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let anchor = match (args.expect_seq, &args.expect_hash) {
        (Some(seq), Some(hash)) => Some(Anchor {
            seq,
            hash: Sha256Digest::from_hex(hash)
                .with_context(|| format!("--expect-hash `{hash}` is not 64 hex digits"))?,
        }),
        _ => None,
    };
    if anchor.is_some() && args.files.len() > 1 {
        anyhow::bail!("--expect-seq and --expect-hash anchor one chain: give one file with them");
    }
    if args.against.is_some() && args.files.len() > 1 {
        anyhow::bail!("--against checks one trail against its export: give one file with it");
    }
    let options = VerifyOptions {
        anchor,
        head_file: !args.no_head_file,
        key: args.key.as_deref().map(ChainKey::load).transpose()?,
    };
    for file in &args.files {
        let report = verify_with(file, &options)?;
        writeln!(out, "{}: {report}", file.display())?;
    }
    if let (Some(export), [file]) = (&args.against, args.files.as_slice()) {
        let report = check_against_export(file, export, &options, args.host.as_deref())?;
        writeln!(
            out,
            "{} against {}: {report}",
            file.display(),
            export.display()
        )?;
        let understood = report.matched + report.mismatched_count + report.duplicates;
        if understood == 0 && report.beyond.is_none() && report.ignored_lines > 0 {
            anyhow::bail!(
                "{}: no line of {} is an exported audit record ({} lines not understood): check the file is the collector's store of riposte's export",
                file.display(),
                export.display(),
                report.ignored_lines
            );
        }
        if report.is_tampered() {
            anyhow::bail!(
                "{}: the trail contradicts the export {}: {report}",
                file.display(),
                export.display()
            );
        }
    }
    Ok(())
}

/// `riposte audit show <file>`: prints records, filtered.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditShowArgs {
    /// The audit logs (JSON lines). Several (every host's of a fleet) are shown as one trail,
    /// merged in time order, each record prefixed with its file (`trail` in JSON).
    #[arg(required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Only this plugin's records.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Only records about this Malop.
    #[arg(long)]
    pub malop: Option<String>,
    /// Only records with this decision.
    #[arg(long, value_enum)]
    pub decision: Option<DecisionKind>,
    /// Print the records as JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `audit show`, writing to `out`.
pub fn run_show(args: &AuditShowArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let filter = Filter {
        plugin: args.plugin.as_deref().map(PluginName::from),
        malop: args.malop.as_deref().map(MalopId::from),
        decision: args.decision,
    };
    let mut trails = Vec::with_capacity(args.files.len());
    for file in &args.files {
        trails.push(show(file, filter.clone())?.peekable());
    }
    let fleet = args.files.len() > 1;
    // Each trail is in time order: merge them by taking the earliest head each time.
    loop {
        let next = trails
            .iter_mut()
            .enumerate()
            .filter_map(|(i, trail)| match trail.peek() {
                Some(Ok(record)) => Some((record.time_ms, i)),
                Some(Err(_)) => Some((TimestampMs::MIN, i)),
                None => None,
            })
            .min();
        let Some((_, i)) = next else { break };
        let Some(record) = trails[i].next() else {
            break;
        };
        let record = record?;
        let trail = args.files[i].display().to_string();
        match (args.json, fleet) {
            (true, false) => writeln!(out, "{}", serde_json::to_string(&record)?)?,
            (true, true) => {
                let mut value = serde_json::to_value(&record)?;
                if let Some(fields) = value.as_object_mut() {
                    fields.insert("trail".to_owned(), trail.into());
                }
                writeln!(out, "{value}")?;
            }
            (false, false) => writeln!(out, "{}", render_record(&record))?,
            (false, true) => writeln!(out, "{trail} {}", render_record(&record))?,
        }
    }
    Ok(())
}

/// One record on one line, for people:
/// `#12 2024-05-01T10:00:00.000Z iso-on-ransomware isolate malop=11.-77 deny: ... (1.2 ms)`.
pub fn render_record(record: &Record) -> String {
    let mut line = format!("#{} {}", record.seq, render_time_ms(record.time_ms));
    if let Some(plugin) = &record.plugin {
        line.push_str(&format!(" {plugin}"));
    }
    line.push_str(&format!(" {}", record.call));
    if let Some(malop) = &record.malop {
        line.push_str(&format!(" malop={malop}"));
    }
    if !record.arguments.is_null() {
        line.push_str(&format!(" args={}", record.arguments));
    }
    if let Some(decision) = &record.decision {
        line.push_str(&format!(" {}: {}", decision.kind, decision.detail));
    }
    if !record.result.is_null() {
        line.push_str(&format!(" -> {}", record.result));
    }
    line.push_str(&format!(" ({:.1} ms)", record.duration_us as f64 / 1000.0));
    line
}

/// Unix ms as RFC 3339 UTC, e.g. `2023-11-14T22:13:20.123Z`; a time chrono cannot
/// represent (beyond ±262,000 years) is shown as its raw milliseconds.
pub fn render_time_ms(ms: TimestampMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms since the Unix epoch"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_utc() {
        assert_eq!(render_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            render_time_ms(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(render_time_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(render_time_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            render_time_ms(i64::MAX),
            "9223372036854775807 ms since the Unix epoch"
        );
    }
}
