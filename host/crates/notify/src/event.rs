//! What riposte notifies about, and the bodies it posts: riposte's own JSON, or a Slack
//! incoming-webhook message.
//!
//! Every text a plugin or a server may have chosen (a summary, an error, a reason) is made
//! one line and clipped; ids are clipped too. An event carries no secret by construction: it
//! holds ids, names, counts and the host's own words, never a session, a password, a key or
//! a token; the webhook's own URL and token are never put in a body.

use crate::config::EventKind;
use riposte_domain::bounds::log_safe;
use riposte_domain::{ActionRequest, MachineGuid, MalopId, PluginName, TimestampMs};
use serde_json::{Value, json};

/// The most bytes of a free text (summary, error, reason) a body carries.
pub const MAX_TEXT_BYTES: usize = 300;
/// The most bytes of an id a body carries.
pub const MAX_ID_BYTES: usize = 128;
/// The most machines a containment notification names (the rest are counted).
pub const MAX_MACHINES: usize = 20;

/// Whose budget tripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BudgetOwner {
    /// A global budget (`[[global_budgets]]`).
    Global,
    /// A plugin's own budget.
    Plugin(PluginName),
}

/// Something an operator should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An action is held for approval.
    ApprovalNeeded {
        /// The ledger's action id.
        action: String,
        /// The plugin that asked for it.
        plugin: PluginName,
        /// The Malop it answers, if any.
        malop: Option<MalopId>,
        /// What it would do, in one line (`isolate 3 machines`).
        summary: String,
        /// When the approval expires undecided (ms since the epoch).
        expires_at_ms: TimestampMs,
    },
    /// An action ended failed, or timed out (its outcome on the server unknown).
    ActionFailed {
        /// The ledger's action id.
        action: String,
        /// The plugin that asked for it.
        plugin: PluginName,
        /// The Malop it answered, if any.
        malop: Option<MalopId>,
        /// What it was, in one line (`isolate`).
        summary: String,
        /// Why it failed, as recorded (`timed out: ...` for a time-out).
        error: String,
    },
    /// A plugin was paused after repeated traps.
    PluginPaused {
        /// The plugin.
        plugin: PluginName,
        /// Why (the last trap, and how many in a row).
        reason: String,
        /// Until when (ms since the epoch).
        until_ms: Option<TimestampMs>,
    },
    /// The gate refused an action because a budget is spent.
    BudgetTripped {
        /// Whose budget.
        owner: BudgetOwner,
        /// The plugin whose action was refused.
        plugin: PluginName,
        /// The budget, in words (`at most 5 isolate per 1h`).
        budget: String,
        /// Units spent in its window.
        used: u64,
        /// Units it allows per window.
        max: u64,
    },
    /// A time-boxed containment is about to be reverted.
    ContainmentReverting {
        /// The ledger's id of the containment action.
        action: String,
        /// The plugin that asked for it.
        plugin: PluginName,
        /// The Malop it answered, if any.
        malop: Option<MalopId>,
        /// The machines it isolated.
        machines: Vec<MachineGuid>,
        /// When it will be reverted unless confirmed (ms since the epoch).
        at_ms: TimestampMs,
    },
    /// riposte's own code failed while running a plugin: not counted against the plugin,
    /// and its Malop is offered again, so a failure that repeats is a bug to report.
    HostFailure {
        /// The plugin that was running.
        plugin: PluginName,
        /// The Malop it was given, if any.
        malop: Option<MalopId>,
        /// What failed, in the host's words.
        error: String,
    },
}

impl Event {
    /// Which event it is.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::ApprovalNeeded { .. } => EventKind::ApprovalNeeded,
            Self::ActionFailed { .. } => EventKind::ActionFailed,
            Self::PluginPaused { .. } => EventKind::PluginPaused,
            Self::BudgetTripped { .. } => EventKind::BudgetTripped,
            Self::ContainmentReverting { .. } => EventKind::ContainmentReverting,
            Self::HostFailure { .. } => EventKind::HostFailure,
        }
    }

    /// For events that repeat while their cause lasts (a pause, a spent budget), what makes
    /// two of them the same: the second within the quiet period is not sent.
    pub(crate) fn repeat_key(&self) -> Option<String> {
        match self {
            Self::PluginPaused { plugin, .. } => Some(format!("paused:{plugin}")),
            Self::HostFailure { plugin, .. } => Some(format!("host-failure:{plugin}")),
            Self::BudgetTripped { owner, budget, .. } => Some(match owner {
                BudgetOwner::Global => format!("budget:global:{budget}"),
                BudgetOwner::Plugin(p) => format!("budget:plugin:{p}:{budget}"),
            }),
            _ => None,
        }
    }

    fn action(&self) -> Option<&str> {
        match self {
            Self::ApprovalNeeded { action, .. }
            | Self::ActionFailed { action, .. }
            | Self::ContainmentReverting { action, .. } => Some(action),
            _ => None,
        }
    }

    fn plugin(&self) -> &PluginName {
        match self {
            Self::ApprovalNeeded { plugin, .. }
            | Self::ActionFailed { plugin, .. }
            | Self::PluginPaused { plugin, .. }
            | Self::BudgetTripped { plugin, .. }
            | Self::ContainmentReverting { plugin, .. }
            | Self::HostFailure { plugin, .. } => plugin,
        }
    }

    fn malop(&self) -> Option<&MalopId> {
        match self {
            Self::ApprovalNeeded { malop, .. }
            | Self::ActionFailed { malop, .. }
            | Self::ContainmentReverting { malop, .. }
            | Self::HostFailure { malop, .. } => malop.as_ref(),
            _ => None,
        }
    }

    /// The path segments of the console's page that deals with it, under the console's
    /// address.
    fn page(&self) -> Option<[String; 2]> {
        match self {
            Self::ApprovalNeeded { action, .. } => Some(["approvals".into(), id(action)]),
            _ => None,
        }
    }

    /// What happened, in one line of plain words (clipped).
    pub fn summary(&self) -> String {
        let plugin = id(self.plugin().as_str());
        let malop = self
            .malop()
            .map(|m| format!(" on Malop {}", id(m.as_str())))
            .unwrap_or_default();
        let line = match self {
            Self::ApprovalNeeded {
                summary,
                expires_at_ms,
                ..
            } => format!(
                "Approval needed: plugin {plugin} asks to {}{malop}; expires {}",
                text(summary),
                rfc3339(*expires_at_ms)
            ),
            Self::ActionFailed { summary, error, .. } => format!(
                "Action failed: {} by plugin {plugin}{malop}: {}",
                text(summary),
                text(error)
            ),
            Self::PluginPaused {
                reason, until_ms, ..
            } => format!(
                "Plugin {plugin} paused{}: {}",
                until_ms
                    .map(|u| format!(" until {}", rfc3339(u)))
                    .unwrap_or_default(),
                text(reason)
            ),
            Self::BudgetTripped {
                owner,
                budget,
                used,
                max,
                ..
            } => format!(
                "Budget tripped: {} ({}) is spent ({used} of {max} used); an action of plugin {plugin} was refused",
                match owner {
                    BudgetOwner::Global => "a global budget".to_string(),
                    BudgetOwner::Plugin(p) => format!("a budget of plugin {}", id(p.as_str())),
                },
                text(budget)
            ),
            Self::ContainmentReverting {
                machines, at_ms, ..
            } => format!(
                "Containment reverting: the isolation of {} by plugin {plugin}{malop} will be reverted at {} unless confirmed",
                count(machines.len(), "machine"),
                rfc3339(*at_ms)
            ),
            Self::HostFailure { error, .. } => format!(
                "Host failure: riposte's own code failed while running plugin {plugin}{malop} (not counted against the plugin; the Malop is offered again): {}",
                text(error)
            ),
        };
        log_safe(&line, 2 * MAX_TEXT_BYTES)
    }

    /// The fields of the event itself, beyond the common ones.
    fn details(&self) -> Value {
        match self {
            Self::ApprovalNeeded { expires_at_ms, .. } => {
                json!({ "expires_at": rfc3339(*expires_at_ms) })
            }
            Self::ActionFailed { error, .. } => json!({ "error": text(error) }),
            Self::PluginPaused {
                reason, until_ms, ..
            } => json!({ "reason": text(reason), "until": until_ms.map(rfc3339) }),
            Self::BudgetTripped {
                owner,
                budget,
                used,
                max,
                ..
            } => json!({
                "budget": {
                    "scope": match owner { BudgetOwner::Global => "global", BudgetOwner::Plugin(_) => "plugin" },
                    "name": text(budget),
                    "used": used,
                    "max": max,
                }
            }),
            Self::ContainmentReverting {
                machines, at_ms, ..
            } => json!({
                "machines": machines.iter().take(MAX_MACHINES).map(|m| id(m.as_str())).collect::<Vec<_>>(),
                "machine_count": machines.len(),
                "revert_at": rfc3339(*at_ms),
            }),
            Self::HostFailure { error, .. } => json!({ "error": text(error) }),
        }
    }
}

/// What is the same in every body of one event: rendered once when it is notified.
#[derive(Clone, Debug)]
pub(crate) struct Rendered {
    pub json: Value,
    pub slack: Value,
}

/// Renders `event`, notified at `at_ms` by `host`, with a link under `console` when there is
/// a page for it.
pub(crate) fn render(
    event: &Event,
    at_ms: TimestampMs,
    host: &str,
    console: Option<&url::Url>,
) -> Rendered {
    let link = console
        .zip(event.page())
        .map(|(base, page)| link(base, &page));
    let summary = event.summary();
    let mut json = json!({
        "event": event.kind().name(),
        "at": rfc3339(at_ms),
        "host": text(host),
        "action_id": event.action().map(id),
        "plugin": id(event.plugin().as_str()),
        "malop_id": event.malop().map(|m| id(m.as_str())),
        "summary": summary,
        "link": link,
    });
    if let (Value::Object(fields), Value::Object(details)) = (&mut json, event.details()) {
        fields.extend(details);
    }
    let slack = slack(event.kind(), &summary, host, at_ms, link.as_deref());
    Rendered { json, slack }
}

/// A Slack incoming-webhook message: a fallback `text` and the same in `blocks`.
fn slack(
    kind: EventKind,
    summary: &str,
    host: &str,
    at_ms: TimestampMs,
    link: Option<&str>,
) -> Value {
    let title = match kind {
        EventKind::ApprovalNeeded => ":raised_hand: Approval needed",
        EventKind::ActionFailed => ":x: Action failed",
        EventKind::PluginPaused => ":double_vertical_bar: Plugin paused",
        EventKind::BudgetTripped => ":no_entry: Budget tripped",
        EventKind::ContainmentReverting => ":hourglass: Containment reverting",
        EventKind::HostFailure => ":rotating_light: Host failure",
    };
    let mut body = format!("*{title}*\n{}", slack_escape(summary));
    if let Some(link) = link {
        body.push_str(&format!(
            "\n<{}|Open in the riposte console>",
            slack_escape(link)
        ));
    }
    json!({
        "text": slack_escape(summary),
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": body } },
            { "type": "context", "elements": [
                { "type": "mrkdwn", "text": format!("riposte on {} · {}", slack_escape(&text(host)), rfc3339(at_ms)) }
            ] },
        ],
    })
}

/// Slack's three control characters, escaped as Slack asks (`&amp;`, `&lt;`, `&gt;`), so a
/// text cannot open a link or mention of its own.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `base` with the path segments of `page` added (`https://console.example/riposte` +
/// `approvals`, `ID`). Each segment is escaped by `url` (a `/`, `?` or `#` in an id cannot
/// leave its segment).
fn link(base: &url::Url, page: &[String]) -> String {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(page);
    }
    url.to_string()
}

/// What `request` does, in a few words and counts, for a summary (`isolate 2 machines`,
/// `remediate 3 items (kill-process, quarantine-file) on 2 machines`). It names no target
/// and quotes nothing the plugin wrote (a comment's text is left out).
pub fn describe(request: &ActionRequest) -> String {
    let machines = |machines: &[MachineGuid]| count(machines.len(), "machine");
    match request {
        ActionRequest::Remediate { targets, .. } => {
            let mut kinds: Vec<&str> = request.action_kinds().iter().map(|k| k.name()).collect();
            kinds.sort_unstable();
            kinds.dedup();
            let mut on: Vec<&MachineGuid> = targets.iter().map(|t| &t.machine_guid).collect();
            on.sort_unstable();
            on.dedup();
            format!(
                "remediate {} ({}) on {}",
                count(targets.len(), "item"),
                kinds.join(", "),
                count(on.len(), "machine")
            )
        }
        ActionRequest::Isolate { machines: m, .. } => format!("isolate {}", machines(m)),
        ActionRequest::Unisolate { machines: m, .. } => format!("unisolate {}", machines(m)),
        ActionRequest::SetReputation { keys, verdict, .. } => format!(
            "set the reputation of {} to {}",
            count(keys.len(), "key"),
            format!("{verdict:?}").to_lowercase()
        ),
        ActionRequest::RemoveReputation { keys } => {
            format!("remove the reputation of {}", count(keys.len(), "key"))
        }
        ActionRequest::SetStatus { status, .. } => {
            format!(
                "set the Malop's status to {}",
                status.as_api().unwrap_or("unknown")
            )
        }
        ActionRequest::AddComment { .. } => "comment on the Malop".into(),
    }
}

/// A free text, one line and clipped.
fn text(text: &str) -> String {
    log_safe(text, MAX_TEXT_BYTES)
}

/// An id, one line and clipped.
fn id(id: &str) -> String {
    log_safe(id, MAX_ID_BYTES)
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, seconds).
pub(crate) fn rfc3339(ms: TimestampMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval() -> Event {
        Event::ApprovalNeeded {
            action: "act-1".into(),
            plugin: PluginName::new("containment"),
            malop: Some(MalopId::new("11.-77")),
            summary: "isolate 2 machines <!channel> & more\nsecond line".into(),
            expires_at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_host_failure_names_plugin_and_malop_clips_its_text_and_repeats_per_plugin() {
        let failure = |plugin: &str| Event::HostFailure {
            plugin: PluginName::new(plugin),
            malop: Some(MalopId::new("11.-77")),
            error: format!("the invocation's task failed: {}\nnext", "x".repeat(5000)),
        };
        let r = render(&failure("containment"), 0, "host-a", None);
        assert_eq!(r.json["event"], "host-failure");
        assert_eq!(r.json["plugin"], "containment");
        assert_eq!(r.json["malop_id"], "11.-77");
        let error = r.json["error"].as_str().unwrap();
        assert!(
            error.len() <= MAX_TEXT_BYTES + 64,
            "clipped: {}",
            error.len()
        );
        let summary = r.json["summary"].as_str().unwrap();
        assert!(
            summary.contains("not counted against the plugin"),
            "{summary}"
        );
        assert!(!summary.contains('\n'), "one line: {summary}");
        assert_eq!(
            failure("containment").repeat_key(),
            failure("containment").repeat_key()
        );
        assert_ne!(
            failure("containment").repeat_key(),
            failure("other").repeat_key()
        );
    }

    #[test]
    fn json_carries_the_common_fields_and_a_link() {
        let base = url::Url::parse("https://console.example/riposte").unwrap();
        let r = render(&approval(), 1_700_000_000_000, "host-a", Some(&base));
        assert_eq!(r.json["event"], "approval-needed");
        assert_eq!(r.json["at"], "2023-11-14T22:13:20Z");
        assert_eq!(r.json["host"], "host-a");
        assert_eq!(r.json["action_id"], "act-1");
        assert_eq!(r.json["plugin"], "containment");
        assert_eq!(r.json["malop_id"], "11.-77");
        assert_eq!(r.json["expires_at"], "2023-11-14T22:13:20Z");
        assert_eq!(
            r.json["link"],
            "https://console.example/riposte/approvals/act-1"
        );
        let summary = r.json["summary"].as_str().unwrap();
        assert!(!summary.contains('\n'), "one line: {summary}");
    }

    #[test]
    fn slack_escapes_its_control_characters_and_links() {
        let base = url::Url::parse("https://console.example/").unwrap();
        let r = render(&approval(), 0, "h&<>", Some(&base));
        let body = r.slack["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(body.contains("&lt;!channel&gt; &amp; more"), "{body}");
        assert!(!body.contains("<!channel>"), "{body}");
        assert!(
            body.ends_with("<https://console.example/approvals/act-1|Open in the riposte console>"),
            "{body}"
        );
        let context = r.slack["blocks"][1]["elements"][0]["text"]
            .as_str()
            .unwrap();
        assert!(context.contains("h&amp;&lt;&gt;"), "{context}");
        assert!(
            r.slack["text"]
                .as_str()
                .unwrap()
                .contains("&lt;!channel&gt;")
        );
    }

    #[test]
    fn a_request_is_described_by_kinds_and_counts_only() {
        use riposte_domain::{MachineGuid, RemediationKind, RemediationTarget};
        let item = |m: &str, kind| RemediationTarget {
            machine_guid: MachineGuid::new(m),
            target_guid: "t".into(),
            kind,
        };
        let remediate = ActionRequest::Remediate {
            malop_id: None,
            targets: vec![
                item("m1", RemediationKind::KillProcess),
                item("m1", RemediationKind::QuarantineFile),
                item("m2", RemediationKind::KillProcess),
            ],
        };
        assert_eq!(
            describe(&remediate),
            "remediate 3 items (kill-process, quarantine-file) on 2 machines"
        );
        let comment = ActionRequest::AddComment {
            malop_id: MalopId::new("m"),
            text: "<!channel> secret-ish".into(),
        };
        assert_eq!(describe(&comment), "comment on the Malop");
    }

    #[test]
    fn texts_and_ids_are_clipped() {
        let event = Event::ActionFailed {
            action: "a".repeat(5000),
            plugin: PluginName::new("p"),
            malop: None,
            summary: "x".repeat(5000),
            error: "e".repeat(100_000),
        };
        let r = render(&event, 0, "h", None);
        let body = r.json.to_string();
        assert!(body.len() < 4_000, "{} bytes", body.len());
        assert!(r.json["link"].is_null());
        let console = url::Url::parse("https://c.example/").unwrap();
        let odd = Event::ApprovalNeeded {
            action: "a/b?c#d".into(),
            plugin: PluginName::new("p"),
            malop: None,
            summary: "isolate 1 machine".into(),
            expires_at_ms: 0,
        };
        let r = render(&odd, 0, "h", Some(&console));
        assert_eq!(r.json["link"], "https://c.example/approvals/a%2Fb%3Fc%23d");
    }
}
