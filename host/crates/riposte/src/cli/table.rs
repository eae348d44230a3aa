//! What the CLI prints for people: tables with dates, ages and one-line summaries (as
//! `kubectl get` does); `--json` keeps the raw records for scripts.

use comfy_table::{Table, presets};
pub(crate) use riposte_console::text::when;
use riposte_console::text::{age, clipped, would};
use riposte_store::{ActionRecord, PendingApproval, TimeBox};
use serde_json::Value;
use std::fmt::Write as _;

/// The actions waiting for an operator, one line each, oldest first, at `now_ms`.
pub(crate) fn pending_approvals(pending: &[PendingApproval], now_ms: i64) -> String {
    if pending.is_empty() {
        return "No action is waiting for an approval.".to_owned();
    }
    let mut table = table([
        "ACTION",
        "PLUGIN",
        "WOULD",
        "MALOP",
        "REQUESTED",
        "EXPIRES",
        "APPROVALS",
        "HASH",
    ]);
    for p in pending {
        let [id, plugin, would, malop] = action_cells(&p.action);
        table.add_row([
            id,
            plugin,
            would,
            malop,
            when(p.requested_at_ms, now_ms),
            when(p.expires_at_ms, now_ms),
            approvals(p),
            p.action_hash.to_hex(),
        ]);
    }
    format!(
        "{table}\n\n{} waiting. Approve with `riposte approvals approve --config FILE ACTION --hash HASH`.",
        pending.len()
    )
}

/// The open time-boxed actions (`boxes[i]` is of `records[i]`), soonest deadline first.
pub(crate) fn time_boxes(boxes: &[TimeBox], records: &[ActionRecord], now_ms: i64) -> String {
    if boxes.is_empty() {
        return "No time-boxed action is waiting to be confirmed or reverted.".to_owned();
    }
    let mut table = table([
        "ACTION",
        "PLUGIN",
        "DID",
        "MALOP",
        "REVERTED",
        "EXTENDED BY",
    ]);
    for (b, a) in boxes.iter().zip(records) {
        let [id, plugin, did, malop] = action_cells(a);
        table.add_row([
            id,
            plugin,
            did,
            malop,
            when(b.deadline_ms, now_ms),
            b.extended_by.as_deref().map_or("-".to_owned(), clipped),
        ]);
    }
    format!(
        "{table}\n\n{} time-boxed. Keep one with `riposte containment confirm --config FILE ACTION`, or `extend --secs N`.",
        boxes.len()
    )
}

/// An action's id, plugin, what it does in one line, and its Malop.
fn action_cells(a: &ActionRecord) -> [String; 4] {
    [
        a.id.as_str().to_owned(),
        a.plugin.as_str().to_owned(),
        would(&a.request, &a.machine_names),
        a.malop_id
            .as_ref()
            .map_or("-".to_owned(), |m| m.as_str().to_owned()),
    ]
}

/// `1/2 os:alice`: approvals so far against the quorum, and by whom.
fn approvals(p: &PendingApproval) -> String {
    let count = format!("{}/{}", p.approved_by.len(), p.quorum);
    if p.approved_by.is_empty() {
        return count;
    }
    format!("{count} {}", clipped(&p.approved_by.join(", ")))
}

/// `riposte status` for people, from the record `--json` prints (`status`), at `now_ms`.
pub(crate) fn status(status: &Value, now_ms: i64) -> String {
    let mut out = String::new();
    let mut plugins = table(["PLUGIN", "MODE", "PAUSED", "BUDGETS (used/max per window)"]);
    for p in items(&status["plugins"]) {
        let paused = p["paused_until_ms"]
            .as_i64()
            .map_or("no".to_owned(), |until| {
                format!("until {}", when(until, now_ms))
            });
        plugins.add_row([
            text(&p["name"]),
            text(&p["mode"]),
            paused,
            budgets(&p["budgets"]),
        ]);
    }
    let _ = writeln!(out, "{plugins}");
    let _ = writeln!(
        out,
        "\nGlobal budgets: {}",
        budgets(&status["global_budgets"])
    );
    let mut sources = table(["SOURCE", "LAST POLL", "WATERMARK"]);
    for s in items(&status["sources"]) {
        sources.add_row([
            text(&s["source"]),
            ms(&s["last_poll_ms"], now_ms),
            ms(&s["watermark_ms"], now_ms),
        ]);
    }
    let _ = writeln!(out, "\n{sources}");
    let _ = writeln!(
        out,
        "\nPending approvals: {} (riposte approvals list)",
        status["pending_approvals"]
    );
    let actions = status["actions_by_state"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "none".to_owned());
    let _ = writeln!(out, "Actions: {actions}");
    let _ = writeln!(
        out,
        "Incomplete Malops: {}",
        status["incomplete_malops"]["count"]
    );
    let mut hosts = table([
        "HOST",
        "VERSION",
        "STARTED",
        "LAST HEARTBEAT",
        "LAST SYSLOG EVENT",
        "HOLDS",
    ]);
    for h in items(&status["hosts"]) {
        hosts.add_row([
            text(&h["host"]),
            text(&h["version"]),
            ms(&h["started_at_ms"], now_ms),
            ms(&h["last_heartbeat_ms"], now_ms),
            ms(&h["last_syslog_event_ms"], now_ms),
            h["holds_lease"].as_str().unwrap_or("-").to_owned(),
        ]);
    }
    let _ = write!(out, "\n{hosts}");
    out
}

/// A borderless table with these column names (as `kubectl get` prints).
fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(header);
    table
}

fn items(list: &Value) -> &[Value] {
    list.as_array().map_or(&[], Vec::as_slice)
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn ms(value: &Value, now_ms: i64) -> String {
    value
        .as_i64()
        .map_or("never".to_owned(), |at| when(at, now_ms))
}

/// Budgets as `ACTION: USED/MAX per WINDOW`, comma-separated.
fn budgets(list: &Value) -> String {
    let shown: Vec<String> = items(list)
        .iter()
        .map(|b| {
            let budget = &b["budget"];
            let window = budget["window_secs"].as_u64().map_or("?".to_owned(), age);
            format!(
                "{}: {}/{} per {window}",
                text(&budget["action"]),
                b["used"],
                budget["max"]
            )
        })
        .collect();
    if shown.is_empty() {
        "none".to_owned()
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_domain::{ActionRequest, MachineGuid, MalopId};
    use std::collections::BTreeMap;

    #[test]
    fn an_isolation_of_many_machines_fits_one_line() {
        let machines = (0..5)
            .map(|i| MachineGuid::new(format!("guid-{i}")))
            .collect();
        let line = would(
            &ActionRequest::Isolate {
                malop_id: Some(MalopId::new("11.1")),
                machines,
            },
            &BTreeMap::new(),
        );
        assert_eq!(line, "isolate 5 machines: guid-0, guid-1, guid-2 (+2 more)");
    }

    #[test]
    fn a_machine_shows_its_name_beside_its_guid_when_known() {
        let names = BTreeMap::from([(MachineGuid::new("guid-0"), "WS-FIN-\u{1b}[2J01".to_owned())]);
        let line = would(
            &ActionRequest::Isolate {
                malop_id: None,
                machines: vec![MachineGuid::new("guid-0"), MachineGuid::new("guid-1")],
            },
            &names,
        );
        assert_eq!(
            line,
            "isolate 2 machines: WS-FIN-\\u{1b}[2J01 (guid-0), guid-1"
        );
    }

    #[test]
    fn times_read_as_dates_and_ages() {
        let now = 1_764_590_400_000; // 2025-12-01 12:00:00 UTC
        assert_eq!(when(now - 90_000, now), "2025-12-01 11:58:30 (1m ago)");
        assert_eq!(
            when(now + 23 * 3_600_000, now),
            "2025-12-02 11:00:00 (in 23h00m)"
        );
        assert_eq!(age(3 * 86_400 + 7200), "3d2h");
    }

    #[test]
    fn the_status_reads_as_tables_with_budgets_and_ages() {
        let now = 1_764_590_400_000;
        let record = serde_json::json!({
            "plugins": [{"name": "containment", "mode": "enforce", "paused_until_ms": now + 60_000,
                         "budgets": [{"budget": {"action": "isolate", "max": 10, "window_secs": 3600},
                                      "used": 3, "remaining": 7}]}],
            "global_budgets": [],
            "sources": [{"source": "crimes/unified:MalopProcess", "last_poll_ms": now - 12_000,
                         "watermark_ms": null}],
            "pending_approvals": 2,
            "actions_by_state": {"succeeded": 5},
            "incomplete_malops": {"count": 0},
            "hosts": [{"host": "soc-1:42", "version": "0.1.0", "started_at_ms": now - 3_600_000,
                       "last_heartbeat_ms": now - 2_000, "last_syslog_event_ms": now - 7_000,
                       "holds_lease": "poller"}],
        });
        let shown = status(&record, now);
        let host = shown
            .lines()
            .find(|l| l.contains("soc-1:42"))
            .expect(&shown);
        assert!(
            host.contains("(2s ago)") && host.contains("(7s ago)") && host.contains("poller"),
            "{host}"
        );
        let plugin = shown
            .lines()
            .find(|l| l.contains("containment"))
            .expect(&shown);
        assert!(
            plugin.contains("enforce") && plugin.contains("isolate: 3/10 per 1h00m"),
            "{plugin}"
        );
        assert!(
            plugin.contains("until 2025-12-01 12:01:00 (in 1m)"),
            "{plugin}"
        );
        assert!(
            shown.contains("(12s ago)") && shown.contains("never"),
            "{shown}"
        );
        assert!(
            shown.contains("Global budgets: none") && shown.contains("Actions: 5 succeeded"),
            "{shown}"
        );
    }

    #[test]
    fn a_comment_is_clipped_to_one_line() {
        let text = format!("line one\nline two {}", "x".repeat(100));
        let line = would(
            &ActionRequest::AddComment {
                malop_id: MalopId::new("11.1"),
                text,
            },
            &BTreeMap::new(),
        );
        assert!(line.starts_with("comment \"line one line two"), "{line}");
        assert!(line.ends_with("…\"") && !line.contains('\n'), "{line}");
    }

    #[test]
    fn escapes_and_direction_overrides_from_a_plugin_are_shown_escaped() {
        let line = would(
            &ActionRequest::AddComment {
                malop_id: MalopId::new("11.1"),
                text: "ok\u{1b}[2K\u{202E}evil".to_owned(),
            },
            &BTreeMap::new(),
        );
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{202E}'),
            "{line:?}"
        );
        assert!(line.contains("\\u{1b}[2K\\u{202e}evil"), "{line}");
    }
}
