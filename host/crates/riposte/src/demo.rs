//! `riposte demo`: the whole product on the built-in simulator, in about a minute.
//!
//! Starts the simulator on a free loopback port, builds the example plugins if needed, writes
//! a sample policy (one plugin in shadow mode, one protected machine, isolation needing
//! approval), runs the service until every seeded Malop is handled, prints a summary and
//! verifies the audit chain. Everything it writes stays in the work directory, so the
//! operator can go on with `riposte status`, `approvals` and `audit show` against it.

use anyhow::Context;
use riposte_audit::{DecisionKind, Filter};
use riposte_client::{Client, ClientConfig, Credentials};
use riposte_domain::{ActionRequest, MalopId, Sha256Digest};
use riposte_service::OperatorConfig;
use riposte_service::{FollowPolicy, Service, now_ms};
use riposte_sim::{SimConfig, SimHandle, Simulator};
use riposte_store::prelude::*;
use riposte_store::{ActionFilter, ActionState};
use riposte_toolchain::BuildOptions;
use riposte_toolchain::progress::Steps;
use std::collections::BTreeMap;
use std::fmt::Write as _;
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
    pub remediation_outcomes: BTreeMap<String, usize>,
    pub audit_records: u64,
    pub audit_head: String,
    pub config: PathBuf,
}

/// Runs the demo and returns its summary.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    let steps = Steps::new(5, "demo");
    steps.start(
        1,
        "building the example plugins (first time: a few minutes)",
    );
    let plugins = steps.suspend(|| built_plugins(&options.root))?;
    steps.start(2, "starting the Cybereason simulator on loopback");
    let password = demo_password();
    let sim = Simulator::start(SimConfig {
        seed: options.seed,
        malops: options.malops,
        username: DEMO_USER.into(),
        password: password.clone(),
        ..SimConfig::default()
    })
    .await?;
    steps.note(&format!(
        "simulator at {} with {} Malops",
        sim.base_url(),
        sim.malops().len()
    ));
    steps.start(3, "writing the sample policy");
    let config_path = write_config(&options.workdir, &sim, &plugins, &password)?;
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
    let mut summary = DemoSummary {
        config: config_path,
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
    service.sync_audit()?;
    steps.start(5, "verifying the audit chain");
    tally(&service, &config, &mut summary)?;
    steps.finish();
    sim.shutdown().await;
    Ok(summary)
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
poll_interval_secs = 2
overlap_window_secs = 60
max_concurrency = 4

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
