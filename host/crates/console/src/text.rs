//! Text for people, shared by the console's pages and the CLI's tables: what an action
//! would do in one line (machines named beside their guids), times as dates and ages, and
//! text a plugin chose made safe to show (clipped, on one line, control and
//! bidirectional characters escaped).

use riposte_domain::{ActionRequest, MachineGuid};
use std::collections::BTreeMap;

/// Targets named in a summary before "(+N more)".
pub const SHOWN_TARGETS: usize = 3;
/// Characters of a reason or comment in a summary.
pub const SHOWN_TEXT: usize = 60;

/// A machine as people know it: `WS-FIN-01 (-1845090846.1198775089551518743)`, or its guid
/// alone when its name is not known.
pub fn machine(guid: &MachineGuid, names: &BTreeMap<MachineGuid, String>) -> String {
    match names.get(guid) {
        Some(name) => format!("{} ({guid})", clipped(name)),
        None => guid.as_str().to_owned(),
    }
}

/// What an action would do, in one line (machines named when `names` knows them).
pub fn would(request: &ActionRequest, names: &BTreeMap<MachineGuid, String>) -> String {
    match request {
        ActionRequest::Remediate { targets, .. } => {
            let mut machines: Vec<&str> = targets.iter().map(|t| t.machine_guid.as_str()).collect();
            machines.sort_unstable();
            machines.dedup();
            let mut kinds: Vec<String> =
                targets.iter().map(|t| t.kind.as_api().to_owned()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            format!(
                "remediate {} on {} machine(s): {}",
                count(targets.len(), "item"),
                machines.len(),
                listed(&kinds)
            )
        }
        ActionRequest::Isolate { machines, .. } | ActionRequest::Unisolate { machines, .. } => {
            let verb = if matches!(request, ActionRequest::Isolate { .. }) {
                "isolate"
            } else {
                "unisolate"
            };
            let guids: Vec<String> = machines.iter().map(|m| machine(m, names)).collect();
            format!(
                "{verb} {}: {}",
                count(machines.len(), "machine"),
                listed(&guids)
            )
        }
        ActionRequest::SetReputation { keys, verdict, .. } => {
            let values: Vec<String> = keys.iter().map(|k| k.value.clone()).collect();
            let verdict = format!("{verdict:?}").to_lowercase();
            format!(
                "{verdict} {}: {}",
                count(keys.len(), "key"),
                listed(&values)
            )
        }
        ActionRequest::RemoveReputation { keys } => {
            let values: Vec<String> = keys.iter().map(|k| k.value.clone()).collect();
            format!(
                "remove the reputation of {}: {}",
                count(keys.len(), "key"),
                listed(&values)
            )
        }
        ActionRequest::SetStatus { status, .. } => format!("set the status to {status:?}"),
        ActionRequest::AddComment { text, .. } => format!("comment \"{}\"", clipped(text)),
    }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The first few of `items`, and how many more.
fn listed(items: &[String]) -> String {
    let shown = items
        .iter()
        .take(SHOWN_TARGETS)
        .map(|s| clipped(s))
        .collect::<Vec<_>>()
        .join(", ");
    match items.len().saturating_sub(SHOWN_TARGETS) {
        0 => shown,
        more => format!("{shown} (+{more} more)"),
    }
}

/// At most [`SHOWN_TEXT`] characters of `text` (which a plugin may have chosen), on one
/// line, with every control and bidirectional-formatting character shown escaped, so that
/// nothing in it can move the cursor, recolour or reorder what the operator reads.
pub fn clipped(text: &str) -> String {
    clip(text, SHOWN_TEXT)
}

/// As [`clipped`], to at most `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    let mut clipped = String::new();
    for c in text.chars().take(max) {
        match c {
            '\n' | '\r' | '\t' => clipped.push(' '),
            c if c.is_control() || is_bidi_control(c) => {
                clipped.extend(c.escape_unicode());
            }
            c => clipped.push(c),
        }
    }
    if text.chars().count() > max {
        clipped.push('…');
    }
    clipped
}

/// The characters that change the direction of the text around them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A time as a UTC date and its distance from `now_ms` ("3m ago", "in 23h").
pub fn when(at_ms: i64, now_ms: i64) -> String {
    let date = chrono::DateTime::from_timestamp_millis(at_ms).map_or_else(
        || at_ms.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
    );
    let delta = (at_ms - now_ms) / 1000;
    let span = age(delta.unsigned_abs());
    if delta == 0 {
        format!("{date} (now)")
    } else if delta < 0 {
        format!("{date} ({span} ago)")
    } else {
        format!("{date} (in {span})")
    }
}

/// A span of seconds in its largest units ("45s", "3m", "2h05m", "3d2h").
pub fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600),
    }
}
