//! `riposte demo`: the whole product on the built-in simulator, in about a minute.
//!
//! Starts the simulator on a free loopback port, builds the example plugins if needed, writes
//! a sample policy (one plugin in shadow mode, one protected machine, isolation needing
//! approval), runs the service until every seeded Malop is handled, prints a summary and
//! verifies the audit chain. Everything it writes stays in the work directory, so the
//! operator can go on with `riposte status`, `approvals` and `audit show` against it.
//!
//! The service's syslog listener runs on a loopback port and the simulator sends it a CEF
//! event for every Malop it creates or updates. Once the seeded Malops are handled, the demo
//! creates a ransomware Malop through the simulator's control API; its `Malop Created` event
//! brings it to the service at once, and the demo reports the containment latency the
//! simulator saw: from the Malop's creation (its event sent) to the first containment request
//! (the kill of its suspects; isolation waits for an operator here) arriving at the server.

use anyhow::Context;
use riposte_audit::{DecisionKind, Filter};
use riposte_client::{Client, ClientConfig, Credentials};
use riposte_domain::now_ms;
use riposte_domain::{ActionRequest, MalopId, Sha256Digest};
use riposte_service::OperatorConfig;
use riposte_service::{FollowPolicy, Service};
use riposte_sim::{SimConfig, SimEventStyle, SimHandle, SimSyslog, Simulator};
use riposte_store::prelude::*;
use riposte_store::{ActionFilter, ActionState};
use riposte_syslog::{
    Framing, HintReceiver, ListenerConfig, SenderConfig, SenderTransport, SyslogListener,
};
use riposte_toolchain::BuildOptions;
use riposte_toolchain::progress::Steps;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The example plugins the demo runs, with their policy.
const PLUGINS: [&str; 4] = [
    "ransomware-containment",
    "cleanup",
    "reputation-feed",
    "python-triage",
];
const DEMO_USER: &str = "demo@riposte.local";
/// The poll interval the demo's configuration sets (`riposte run` on it polls this often).
const POLL_INTERVAL_SECS: u64 = 2;
/// How long the demo waits for the simulator's syslog event to reach the listener.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// The API paths of containment requests: killing a process, isolating a machine.
const CONTAINMENT_PATHS: [&str; 2] = ["/rest/remediate", "/rest/monitor/global/commands/isolate"];

/// Options of the demo.
#[derive(Clone, Debug)]
pub(crate) struct DemoOptions {
    /// The repository root (holds plugins/ and target/).
    pub root: PathBuf,
    /// Where the database, audit trail and config go (emptied first).
    pub workdir: PathBuf,
    /// Malops the simulator seeds.
    pub malops: usize,
    /// The simulator's seed.
    pub seed: u64,
    /// After the summary, keep the service and its console running until Ctrl-C.
    pub keep_running: bool,
}

/// What the demo did.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct DemoSummary {
    pub malops_seen: usize,
    pub invocations: usize,
    pub cycles: usize,
    pub executed: usize,
    pub denied: usize,
    pub shadowed: usize,
    pub awaiting_approval: usize,
    /// Sent and not final yet (isolations the server queued for offline sensors).
    pub following: usize,
    pub remediation_outcomes: BTreeMap<String, usize>,
    pub audit_records: u64,
    pub audit_head: String,
    pub config: PathBuf,
    pub event_containment: Option<EventContainment>,
    /// The console's address (its login is printed, never kept).
    pub console: Option<String>,
}

/// The Malop the demo created after the seeded ones, and how soon it was contained.
#[derive(Debug, serde::Serialize)]
pub(crate) struct EventContainment {
    /// The new ransomware Malop.
    pub malop: String,
    /// From its creation (its `Malop Created` event sent) to the first containment request
    /// arriving at the simulator; `None` when no such request came (e.g. only a protected
    /// machine was affected).
    pub latency_ms: Option<f64>,
    /// The containment request's API path.
    pub request: Option<String>,
    /// The configured poll interval, which a poll-only service would wait for.
    pub poll_interval_secs: u64,
}

/// Runs the demo and returns its summary.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    let steps = Steps::new(6, "demo");
    steps.start(
        1,
        "building the example plugins (first time: a few minutes)",
    );
    let plugins = steps.suspend(|| built_plugins(&options.root))?;
    steps.start(
        2,
        "starting the Cybereason simulator and the syslog listener on loopback",
    );
    let (listener, mut hints, syslog) = start_listener().await?;
    let password = demo_password();
    let mut events = SenderConfig::new(SenderTransport::Tcp, syslog.to_string());
    events.framing = Framing::Newline;
    let sim = Simulator::start(SimConfig {
        seed: options.seed,
        malops: options.malops,
        username: DEMO_USER.into(),
        password: password.clone(),
        syslog: Some(SimSyslog {
            sender: events,
            style: SimEventStyle::Vendor,
        }),
        ..SimConfig::default()
    })
    .await?;
    steps.note(&format!(
        "simulator at {} with {} Malops, sending its Malop events to {syslog}",
        sim.base_url(),
        sim.malops().len()
    ));
    steps.start(3, "writing the sample policy");
    let config_path = write_config(&options.workdir, &sim, &plugins, &password, syslog)?;
    let config = OperatorConfig::load(&config_path)?;
    let client = Arc::new(Client::new(ClientConfig::new(
        sim.base_url(),
        Credentials::new(DEMO_USER, password),
    ))?);
    steps.start(
        4,
        "loading the plugins and running the service until every Malop is handled",
    );
    let follow = FollowPolicy {
        poll_interval: Duration::ZERO,
        ..FollowPolicy::default()
    };
    let service = Service::start(
        config.clone(),
        client,
        follow,
        Arc::new(riposte_metrics::Metrics::new()),
    )
    .await?;
    // Served while the demo runs (and after it with --keep-running).
    let console = DemoConsole::start(&service).await?;
    steps.note(&format!(
        "the console: {} (log in as {} with {}; this run only)",
        console.url, DEMO_CONSOLE_USER, console.password
    ));
    let mut summary = DemoSummary {
        config: config_path,
        console: Some(console.url.clone()),
        ..DemoSummary::default()
    };
    for cycle in 1..=10 {
        let report = service.run_cycle().await?;
        steps.note(&format!(
            "cycle {cycle}: {} Malops, {} invocations, {} traps",
            report.malops_seen, report.invocations, report.traps
        ));
        summary.cycles = cycle;
        summary.invocations += report.invocations;
        summary.malops_seen = summary.malops_seen.max(report.malops_seen);
        if all_handled(&service, &sim)? && report.recovered == 0 {
            break;
        }
    }
    steps.start(
        5,
        "a ransomware Malop appears: the server's syslog event brings it in",
    );
    let (contained, hinted) = contain_on_event(&service, &sim, &mut hints).await?;
    // The evaluation the event brought counts with the cycles' (the new Malop was seen and
    // its plugins invoked there, not in a poll).
    summary.invocations += hinted.invocations;
    summary.malops_seen += hinted.new_malops;
    steps.note(&match contained.latency_ms {
        Some(ms) => format!("contained {ms:.1} ms after its creation"),
        None => "no containment request reached the server".to_owned(),
    });
    summary.event_containment = Some(contained);
    service.sync_audit()?;
    steps.start(6, "verifying the audit chain");
    tally(&service, &config, &mut summary)?;
    steps.finish();
    if options.keep_running {
        print!("{}", render(&summary));
        keep_running(&service, &console).await?;
    }
    // As `riposte run` stops: notifications within NOTIFY_FLUSH_GRACE, what is left logged
    // as a count.
    service.close().await?;
    listener.shutdown().await;
    sim.shutdown().await;
    Ok(summary)
}

/// The console user the demo creates, with a password of its run.
const DEMO_CONSOLE_USER: &str = "demo";
/// What the audit record of the demo's console user says of it.
const DEMO_CONSOLE_NOTE: &str =
    "the demo's one-time console login (its password was printed once, never kept)";

/// The demo's console on a free loopback port, with a one-time admin login.
struct DemoConsole {
    url: String,
    password: String,
    _server: riposte_console::ConsoleServer,
}

impl DemoConsole {
    async fn start(service: &Service) -> anyhow::Result<Self> {
        let password = riposte_console::auth::generate_password();
        let hash = riposte_console::auth::hash_password(&password)
            .context("hashing the demo's console password")?;
        let name = riposte_domain::UserName::parse(DEMO_CONSOLE_USER)
            .map_err(|e| anyhow::anyhow!("the demo's console user: {e}"))?;
        let role = riposte_domain::Role::Admin;
        service
            .store()
            .add_user(&name, role, &hash, now_ms())
            .context("adding the demo's console user")?;
        // Audited as `riposte users add` audits, in the service's own trail (one chain).
        crate::cli::record_user_change(
            service.auditor().sink(),
            crate::cli::USER_ADDED,
            serde_json::json!({ "user": name, "role": role, "note": DEMO_CONSOLE_NOTE }),
        )
        .context("auditing the demo's console user")?;
        let settings = riposte_console::ConsoleConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..riposte_console::ConsoleConfig::default()
        };
        let server = riposte_console::Console::serve_for(settings, service)
            .await
            .context("starting the demo's console")?;
        let url = server.url();
        Ok(Self {
            url,
            password,
            _server: server,
        })
    }
}

/// Runs a cycle every few seconds (so what is approved in the console is carried out) until
/// Ctrl-C.
async fn keep_running(service: &Service, console: &DemoConsole) -> anyhow::Result<()> {
    println!(
        "\nThe console stays at {} (log in as {} with {}). Ctrl-C stops the demo.",
        console.url, DEMO_CONSOLE_USER, console.password
    );
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tick.tick() => {
                service.run_cycle().await?;
                service.sync_audit()?;
            }
        }
    }
}

/// The service's syslog listener on a free loopback port, for the simulator only.
async fn start_listener() -> anyhow::Result<(SyslogListener, HintReceiver, SocketAddr)> {
    let config = ListenerConfig {
        enabled: true,
        tcp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        allowed_sources: vec!["127.0.0.1".parse().map_err(anyhow::Error::msg)?],
        ..ListenerConfig::default()
    };
    let (listener, hints) = SyslogListener::start(&config)
        .await
        .context("starting the syslog listener on loopback")?;
    let addr = listener
        .local_addrs()
        .tcp
        .context("the syslog listener has no TCP address")?;
    Ok((listener, hints, addr))
}

/// What the evaluation of the Malops named by syslog events added to the summary.
struct Hinted {
    /// Plugin invocations.
    invocations: usize,
    /// 1 when the new Malop was read and offered (the others named were seen by the polls).
    new_malops: usize,
}

/// Creates a ransomware Malop through the simulator's control API, evaluates the Malops the
/// syslog events name as `riposte run` does between polls, and measures how soon the first
/// containment request about it reached the simulator.
async fn contain_on_event(
    service: &Service,
    sim: &SimHandle,
    hints: &mut HintReceiver,
) -> anyhow::Result<(EventContainment, Hinted)> {
    // On a machine the policy does not protect (it protects the first).
    let machine = sim
        .machines()
        .get(1)
        .map(|m| m.name.clone())
        .context("the simulator has a single machine")?;
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/sim/malops", sim.base_url()))
        .json(
            &serde_json::json!({"kind": "ransomware", "machinesOnline": true, "machine": machine}),
        )
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("creating a Malop through the simulator's control API")?
        .json()
        .await
        .context("reading the control API's answer")?;
    let (Some(malop), Some(created_us)) = (created["id"].as_str(), created["createdAtUs"].as_u64())
    else {
        anyhow::bail!("the control API's answer lacks id or createdAtUs: {created}");
    };
    // Events of the seeded Malops' updates (statuses the plugins set) may come first: each
    // bite of hints is evaluated as `riposte run` would, until one names the new Malop.
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    let mut hinted = Hinted {
        invocations: 0,
        new_malops: 0,
    };
    while hinted.new_malops == 0 {
        let first = tokio::time::timeout_at(deadline, hints.recv())
            .await
            .with_context(|| {
                format!("no syslog event named the new Malop {malop} within {EVENT_WAIT:?}")
            })?
            .context("the syslog listener stopped")?;
        let ids = crate::cli::take_hints(first, Some(hints));
        let received = riposte_domain::now_ms();
        let report = service.evaluate_hinted(&ids).await?;
        service.membership().event_received(received).await;
        hinted.invocations += report.invocations;
        hinted.new_malops =
            usize::from(report.malops_seen > 0 && ids.iter().any(|id| id.as_str() == malop));
    }
    service.drain_followups().await;
    let request = sim.requests().into_iter().find(|r| {
        r.method == "POST"
            && CONTAINMENT_PATHS.contains(&r.path.as_str())
            && r.body.contains(malop)
            && r.received_us >= created_us
    });
    let contained = EventContainment {
        malop: malop.to_owned(),
        latency_ms: request
            .as_ref()
            .map(|r| (r.received_us - created_us) as f64 / 1000.0),
        request: request.map(|r| r.path),
        poll_interval_secs: POLL_INTERVAL_SECS,
    };
    Ok((contained, hinted))
}

fn built_plugins(root: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let out = root.join("target/plugins");
    let path_of = |name: &str| out.join(format!("{name}.wasm"));
    if PLUGINS.iter().any(|p| !path_of(p).is_file()) {
        let mut opts = BuildOptions::new(root);
        opts.echo = true;
        riposte_toolchain::build_plugins(&opts).context("building the example plugins")?;
    }
    Ok(PLUGINS
        .iter()
        .map(|p| (p.to_string(), path_of(p)))
        .collect())
}

fn demo_password() -> String {
    format!("demo-{}", uuid::Uuid::new_v4().simple())
}

/// Whether every plugin has handled every Malop it subscribes to, at its latest update
/// (paused plugins excepted).
fn all_handled(service: &Service, sim: &SimHandle) -> anyhow::Result<bool> {
    let store = service.store();
    for malop in sim.malops() {
        let id = MalopId::new(malop.guid.clone());
        for plugin in service.plugins() {
            let wants = plugin.info.subscription.matches_parts(
                malop.kind,
                &malop.activity_types,
                &malop.detection_type,
            );
            if !wants
                || store
                    .paused_until(plugin.policy.name.as_str(), now_ms())?
                    .is_some()
            {
                continue;
            }
            if !store.is_handled(&plugin.policy.name, &id, malop.last_update_time, None)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn tally(
    service: &Service,
    config: &OperatorConfig,
    summary: &mut DemoSummary,
) -> anyhow::Result<()> {
    let actions = service.store().list_actions(&ActionFilter::default())?;
    for action in &actions {
        match action.state {
            ActionState::Shadowed => summary.shadowed += 1,
            ActionState::AwaitingApproval => summary.awaiting_approval += 1,
            ActionState::Submitted | ActionState::Following => summary.following += 1,
            ActionState::Succeeded | ActionState::Failed | ActionState::TimedOut => {
                summary.executed += 1;
                if matches!(action.request, ActionRequest::Remediate { .. }) {
                    *summary
                        .remediation_outcomes
                        .entry(action.state.as_str().to_owned())
                        .or_default() += 1;
                }
            }
            _ => {}
        }
    }
    let denied = riposte_audit::show(
        &config.service.audit.path,
        Filter {
            decision: Some(DecisionKind::Deny),
            ..Filter::default()
        },
    )?;
    summary.denied = denied.filter(Result::is_ok).count();
    let report = riposte_audit::verify(&config.service.audit.path)
        .with_context(|| format!("verifying {}", config.service.audit.path.display()))?;
    summary.audit_records = report.records;
    summary.audit_head = report.head.map(|h| h.hash.to_string()).unwrap_or_default();
    Ok(())
}

/// Renders the summary for a person.
pub fn render(summary: &DemoSummary) -> String {
    let mut out = String::new();
    let config = summary.config.display();
    let _ = writeln!(out, "\nriposte demo: done in {} cycles", summary.cycles);
    let _ = writeln!(out, "  Malops seen            {}", summary.malops_seen);
    let _ = writeln!(out, "  plugin invocations     {}", summary.invocations);
    if let Some(console) = &summary.console {
        let _ = writeln!(
            out,
            "  console                {console} (stopped with the demo; --keep-running keeps it)"
        );
    }
    let _ = writeln!(out, "  actions executed       {}", summary.executed);
    let _ = writeln!(
        out,
        "  actions denied         {}  (protected machine, grants, budgets)",
        summary.denied
    );
    let _ = writeln!(
        out,
        "  actions shadowed       {}  (reputation-feed runs in shadow mode)",
        summary.shadowed
    );
    let _ = writeln!(
        out,
        "  awaiting approval      {}  (isolation needs an operator)",
        summary.awaiting_approval
    );
    if summary.following > 0 {
        let _ = writeln!(
            out,
            "  still followed         {}  (isolations queued for offline sensors)",
            summary.following
        );
    }
    let outcomes: Vec<String> = summary
        .remediation_outcomes
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let _ = writeln!(
        out,
        "  remediation outcomes   {}",
        if outcomes.is_empty() {
            "none".into()
        } else {
            outcomes.join(", ")
        }
    );
    if let Some(contained) = &summary.event_containment {
        let what = match &contained.request {
            Some(path) if path.contains("isolate") => "isolation",
            _ => "kill",
        };
        let _ = match contained.latency_ms {
            Some(ms) => writeln!(
                out,
                "  containment latency    {ms:.1} ms  (syslog event to {what} request; polling alone: up to {} s)\n{:25}for the new ransomware Malop {}",
                contained.poll_interval_secs, "", contained.malop
            ),
            None => writeln!(
                out,
                "  containment latency    none: no containment request for the new Malop {} (protected machine?)",
                contained.malop
            ),
        };
    }
    let _ = writeln!(
        out,
        "  audit trail            {} records, chain verified (head {})",
        summary.audit_records,
        &summary.audit_head[..summary.audit_head.len().min(16)]
    );
    let _ = writeln!(
        out,
        "\nGo on with:\n  riposte status --config {config}\n  riposte approvals list --config {config}\n  riposte audit show {}",
        summary.config.with_file_name("audit.jsonl").display()
    );
    out
}

fn write_config(
    dir: &Path,
    sim: &SimHandle,
    plugins: &BTreeMap<String, PathBuf>,
    password: &str,
    syslog: SocketAddr,
) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let credentials = dir.join("credentials");
    std::fs::write(
        &credentials,
        format!("username = {DEMO_USER}\npassword = {password}\n"),
    )?;
    restrict(&credentials)?;
    let protected = sim
        .machines()
        .first()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let pin = |name: &str| -> anyhow::Result<String> {
        let bytes = std::fs::read(&plugins[name])
            .with_context(|| format!("reading {}", plugins[name].display()))?;
        Ok(Sha256Digest::of(&bytes).to_hex())
    };
    let path = |name: &str| plugins[name].display().to_string();
    let toml = format!(
        r#"# Written by `riposte demo`.
[service]
poll_interval_secs = {poll}
overlap_window_secs = 60
max_concurrency = 4

# The server's CEF syslog events (here: the simulator's) name Malops to evaluate at once.
[service.syslog]
enabled = true
tcp_listen = "{syslog}"
allowed_sources = ["127.0.0.1"]

[service.database]
path = "{db}"

[service.audit]
path = "{audit}"
fsync = "never"

[service.server]
base_url = "{url}"
credentials_file = "{credentials}"

[protected]
machine_name_globs = ["{protected}"]

[approvals]
required = ["isolate"]
expiry_secs = 3600

[[global_budgets]]
action = "any"
max = 500
window_secs = 3600

[[plugins]]
name = "ransomware-containment"
path = "{p1}"
sha256 = "{h1}"
mode = "enforce"
[plugins.grants]
operations = ["get-malop", "isolate", "unisolate", "remediate", "remediation-status"]
remediation = ["kill-process"]
[[plugins.budgets]]
action = "isolate"
max = 10
window_secs = 3600

[[plugins]]
name = "cleanup"
path = "{p2}"
sha256 = "{h2}"
mode = "enforce"
[plugins.grants]
operations = ["get-malop", "remediate", "remediation-status"]
remediation = ["quarantine-file", "delete-registry-key"]

[[plugins]]
name = "reputation-feed"
path = "{p3}"
sha256 = "{h3}"
mode = "shadow"
[plugins.grants]
operations = ["get-malop", "set-reputation"]
[plugins.values]
allow-list = "8.8.8.8, *.microsoft.com"

[[plugins]]
name = "python-triage"
path = "{p4}"
sha256 = "{h4}"
mode = "enforce"
[plugins.grants]
operations = ["add-comment", "set-status"]
[plugins.values]
min-priority = "HIGH"
"#,
        poll = POLL_INTERVAL_SECS,
        db = dir.join("riposte.db").display(),
        audit = dir.join("audit.jsonl").display(),
        url = sim.base_url(),
        credentials = credentials.display(),
        p1 = path("ransomware-containment"),
        h1 = pin("ransomware-containment")?,
        p2 = path("cleanup"),
        h2 = pin("cleanup")?,
        p3 = path("reputation-feed"),
        h3 = pin("reputation-feed")?,
        p4 = path("python-triage"),
        h4 = pin("python-triage")?,
    );
    let config = dir.join("riposte.toml");
    std::fs::write(&config, toml).with_context(|| format!("writing {}", config.display()))?;
    Ok(config)
}

fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
