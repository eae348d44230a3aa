//! Bounds on everything a plugin hands the host (G11): the sizes the policy gate accepts, and
//! the excerpts that stand in for a payload wherever one must be shown (the audit record of a
//! refused call, a log line, an error message).
//!
//! Nothing a plugin sends is copied whole into a log, the ledger or the audit trail: a call
//! within these bounds is recorded as sent; a call past them is refused and recorded as an
//! excerpt ([`excerpt`], [`summarize`]) with its size. Text from a plugin that reaches one of
//! riposte's own log lines goes through [`log_safe`], so it can never start a line of its own.

use serde_json::Value;

/// Longest id a plugin may pass (a Malop id, a machine or element guid, an action id). Real
/// ids are tens of bytes: `11.-7780537507363356527`, `-1845090846.1198775089551518743`.
pub const MAX_ID_BYTES: usize = 256;
/// Most targets (machines, remediation items) in one call.
pub const MAX_TARGETS: usize = 1_000;
/// Most reputation keys in one call.
pub const MAX_KEYS: usize = 1_000;
/// Longest reputation key value (a domain name is at most 253 bytes).
pub const MAX_KEY_BYTES: usize = 256;
/// Longest reason a plugin may give for an action.
pub const MAX_REASON_BYTES: usize = 2_048;
/// Longest comment, in characters.
pub const MAX_COMMENT_CHARS: usize = 10_000;
/// Longest log message kept; the rest is cut (and said so).
pub const MAX_LOG_BYTES: usize = 4_096;
/// Longest error detail a plugin may return from an export; the rest is cut.
pub const MAX_ERROR_BYTES: usize = 2_048;
/// Longest kv key.
pub const MAX_KV_KEY_BYTES: usize = 256;
/// Longest kv value.
pub const MAX_KV_VALUE_BYTES: usize = 64 * 1024;
/// A plugin's kv storage: its entries' keys and values, and [`KV_ENTRY_OVERHEAD_BYTES`]
/// for each entry.
pub const MAX_KV_BYTES_PER_PLUGIN: u64 = 1 << 20;
/// What each kv entry counts against its plugin's storage besides its key and value (what a
/// row costs the database), so a plugin cannot keep a million empty entries in 1 MiB.
pub const KV_ENTRY_OVERHEAD_BYTES: u64 = 64;
/// Most `kv.get` calls in one invocation: each takes the database's lock, which the ledger's
/// writes need too, so a plugin reading in a loop until its time runs out would slow every
/// other plugin's actions. Past it the invocation stops (the WIT gives `get` no error to
/// return, and "absent" would be a lie).
pub const MAX_KV_READS: u32 = 1_024;
/// Longest string of `describe` (name, version, description, one subscription entry).
pub const MAX_DESCRIBE_BYTES: usize = 1_024;
/// Most entries of one subscription list in `describe`.
pub const MAX_SUBSCRIPTION_ENTRIES: usize = 64;
/// Most bytes one call from a plugin may hand the host, all its strings and lists together
/// (wasmtime's hostcall fuel): wasmtime copies a call's arguments, and an export's results,
/// before any check of the host's can look at them, and a hand-built list can name one long
/// string many times over. Past it the call traps and the invocation stops. The largest
/// call within every other bound (1,000 targets of two 256-byte ids) is about 0.5 MiB.
pub const MAX_CALL_BYTES: usize = 4 << 20;
/// Most `crimes/unified` queries one `list-malops` call may cost per element kind: a window
/// holding more Malops than that many answers carry is refused (`server-error`, asking for a
/// shorter window), so one query unit cannot list a tenant's whole history.
pub const MAX_LIST_QUERIES: u32 = 8;
/// How far past the host's clock `list-malops` may end its window, in ms (1 hour of skew
/// between the host and the server).
pub const MAX_LIST_AHEAD_MS: i64 = 3600 * 1000;
/// The bytes of a string kept in an excerpt.
pub const EXCERPT_BYTES: usize = 96;
/// The items of a list kept in a summary.
pub(crate) const EXCERPT_ITEMS: usize = 8;

/// The longest prefix of `text` of at most `max` bytes that ends at a character boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` bytes (at a character boundary), with what was cut said:
/// `abc… [+1234 bytes]`. Unchanged when it fits.
pub fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let kept = prefix(text, max);
    format!("{kept}… [+{} bytes]", text.len() - kept.len())
}

/// `text` made safe for one line of a log or a terminal, in every log format: control
/// characters (newlines, carriage returns, escape sequences), line and paragraph separators
/// and bidirectional overrides are written as escapes (`\n`, `\u{1b}`), so a plugin cannot
/// start a line of its own or disguise one; then cut to `max` bytes.
pub fn log_safe(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 16);
    for (at, c) in text.char_indices() {
        if out.len() >= max {
            out.push_str(&format!("… [+{} bytes]", text.len() - at));
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Whether `c` may not appear raw in a log line.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `text` holds a character that may not appear in an id (control characters and
/// whitespace: ids are opaque, but never multi-line).
pub fn has_forbidden_id_char(text: &str) -> bool {
    text.chars().any(|c| c.is_whitespace() || needs_escape(c))
}

/// A bounded summary of a JSON value for the record of a refused call: strings longer than
/// [`EXCERPT_BYTES`] become excerpts, lists longer than [`EXCERPT_ITEMS`] keep their first
/// items and say how many were left out. Object keys are kept (they come from riposte's own
/// types).
pub fn summarize(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(excerpt(s, EXCERPT_BYTES)),
        Value::Array(items) => {
            let mut kept: Vec<Value> = items.iter().take(EXCERPT_ITEMS).map(summarize).collect();
            if items.len() > EXCERPT_ITEMS {
                kept.push(Value::String(format!(
                    "… {} more item(s), {} in all",
                    items.len() - EXCERPT_ITEMS,
                    items.len()
                )));
            }
            Value::Array(kept)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (excerpt(k, EXCERPT_BYTES), summarize(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn excerpts_cut_at_a_character_boundary_and_say_how_much() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("abcdef", 3), "abc… [+3 bytes]");
        // 'é' is two bytes: a cut in its middle moves back.
        assert_eq!(excerpt("aé", 2), "a… [+2 bytes]");
    }

    #[test]
    fn log_lines_cannot_be_forged() {
        let forged =
            "ok\n2025-01-01T00:00:00Z  INFO riposte: approved everything\r\u{1b}[2K\u{202e}x";
        let safe = log_safe(forged, 1_000);
        assert!(!safe.contains('\n') && !safe.contains('\r') && !safe.contains('\u{1b}'));
        assert!(!safe.contains('\u{202e}'));
        assert!(safe.starts_with("ok\\n2025"), "{safe}");
        assert!(
            safe.contains("\\u{1b}[2K") && safe.contains("\\u{202e}x"),
            "{safe}"
        );
        assert_eq!(log_safe("plain text: ok", 1_000), "plain text: ok");
        let long = "\n".repeat(10_000);
        let cut = log_safe(&long, 100);
        assert!(cut.len() < 200 && !cut.contains('\n'), "{cut}");
        assert!(cut.ends_with(']'), "{cut}");
    }

    #[test]
    fn summaries_are_bounded_whatever_the_payload() {
        let big = json!({
            "machines": (0..10_000).map(|i| format!("m{i}")).collect::<Vec<_>>(),
            "id": "x".repeat(1 << 20),
            "n": 3,
        });
        let summary = summarize(&big);
        let text = summary.to_string();
        assert!(text.len() < 2_000, "{}", text.len());
        assert_eq!(
            summary["machines"].as_array().unwrap().len(),
            EXCERPT_ITEMS + 1
        );
        assert!(text.contains("9992 more item(s), 10000 in all"), "{text}");
        assert!(
            summary["id"]
                .as_str()
                .unwrap()
                .ends_with("[+1048480 bytes]")
        );
        assert_eq!(summary["n"], 3);
    }

    #[test]
    fn ids_are_single_tokens() {
        assert!(!has_forbidden_id_char("11.-7780537507363356527"));
        assert!(!has_forbidden_id_char("PYLUMCLIENT_ORG_HOST_0800273ADC2F"));
        assert!(has_forbidden_id_char("11.1\nforged"));
        assert!(has_forbidden_id_char("a b"));
    }
}
