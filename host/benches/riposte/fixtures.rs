//! What the benchmarks run on: built plugins, the simulator, the real client, services
//! configured like an operator would.

use anyhow::Context;
use riposte_client::{Client, ClientConfig, Credentials};
use riposte_domain::{ElementKind, Malop, Sha256Digest};
use riposte_service::OperatorConfig;
use riposte_service::{FollowPolicy, Service};
use riposte_sim::{SimConfig, SimHandle, Simulator};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const USER: &str = "bench@riposte.local";
pub const PASSWORD: &str = "bench-password";

/// Components the benchmarks need, relative to `target/plugins`.
pub const NEEDED: [&str; 7] = [
    "examples/noop-rule",
    "examples/host-calls",
    "ransomware-containment",
    "cleanup",
    "reputation-feed",
    "python-triage",
    "lateral-movement",
];

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("host/benches sits in the repository")
}

/// `target/plugins/<name>.wasm`.
pub fn plugin_path(name: &str) -> PathBuf {
    root().join("target/plugins").join(format!("{name}.wasm"))
}

/// The Rust examples, all section 10 runs.
pub const RUST_EXAMPLES: [&str; 3] = ["ransomware-containment", "cleanup", "reputation-feed"];

/// Builds the plugins with `riposte plugin build`'s tooling when any is missing: all of
/// them, or only the Rust examples when they are all a run needs (`only_rust`).
pub fn ensure_plugins(only_rust: bool) -> anyhow::Result<()> {
    let needed: &[&str] = if only_rust { &RUST_EXAMPLES } else { &NEEDED };
    if needed.iter().all(|n| plugin_path(n).is_file()) {
        return Ok(());
    }
    eprintln!("building the plugins (riposte plugin build) ...");
    let mut opts = riposte_toolchain::BuildOptions::new(root());
    opts.echo = true;
    if only_rust {
        opts.only = RUST_EXAMPLES.iter().map(|n| n.to_string()).collect();
    }
    riposte_toolchain::build_plugins(&opts).context("building the plugins")?;
    Ok(())
}

/// Reads a built plugin.
pub fn plugin_bytes(name: &str) -> anyhow::Result<Vec<u8>> {
    let path = plugin_path(name);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// A simulator on loopback with `malops` seeded Malops.
pub async fn simulator(malops: usize, seed: u64) -> anyhow::Result<SimHandle> {
    Simulator::start(SimConfig {
        seed,
        malops,
        username: USER.into(),
        password: PASSWORD.into(),
        ..SimConfig::default()
    })
    .await
}

/// The real client, logged in to `sim`.
pub async fn client(sim: &SimHandle) -> anyhow::Result<Arc<Client>> {
    let client = Client::new(ClientConfig::new(
        sim.base_url(),
        Credentials::new(USER, PASSWORD),
    ))?;
    client.login_now().await?;
    Ok(Arc::new(client))
}

/// Every Malop of the simulator with full details, fetched by the real client.
pub async fn detailed_malops(client: &Client) -> anyhow::Result<Vec<Malop>> {
    let mut out = Vec::new();
    for m in client.all_malops_updated_since(0).await? {
        out.push(client.get_malop_details(&m.id).await?);
    }
    Ok(out)
}

/// A detailed Malop of the given detection type with a connected machine.
pub fn pick<'a>(malops: &'a [Malop], detection: &str) -> &'a Malop {
    malops
        .iter()
        .find(|m| m.detection_type == detection && m.machines.iter().any(|x| x.connected))
        .or_else(|| malops.iter().find(|m| m.detection_type == detection))
        .unwrap_or(&malops[0])
}

/// One `[[plugins]]` entry.
pub struct PluginEntry {
    pub name: String,
    pub component: String,
    pub mode: &'static str,
    pub operations: &'static [&'static str],
    pub remediation: &'static [&'static str],
    pub values: Vec<(String, String)>,
    /// `malop_parts` to declare (issue 15), when the configuration knows the key; empty:
    /// not written (every part).
    pub parts: &'static [&'static str],
}

impl PluginEntry {
    pub fn new(name: &str, component: &str, mode: &'static str) -> Self {
        let (operations, remediation): (&[&str], &[&str]) = match component {
            "ransomware-containment" => (
                &["get-malop", "isolate", "remediate", "remediation-status"],
                &["kill-process"],
            ),
            "cleanup" => (
                &["get-malop", "remediate", "remediation-status"],
                &["quarantine-file", "delete-registry-key"],
            ),
            "reputation-feed" => (&["get-malop", "set-reputation"], &[]),
            "python-triage" => (&["add-comment", "set-status"], &[]),
            _ => (&["get-malop", "add-comment"], &[]),
        };
        Self {
            name: name.into(),
            component: component.into(),
            mode,
            operations,
            remediation,
            values: Vec::new(),
            parts: &[],
        }
    }

    /// Declares the parts of a Malop the example reads (`malop_parts`, from its source).
    pub fn parts_read(mut self) -> Self {
        self.parts = match self.component.as_str() {
            "ransomware-containment" => &["suspects", "sensors"],
            "cleanup" => &["suspects", "files", "sensors"],
            "reputation-feed" => &["network"],
            _ => &[],
        };
        self
    }

    pub fn value(mut self, key: &str, value: &str) -> Self {
        self.values.push((key.into(), value.into()));
        self
    }
}

/// Writes an operator config for `plugins` against `sim` in `dir` and loads it.
pub fn write_config(
    dir: &Path,
    sim: &SimHandle,
    plugins: &[PluginEntry],
    fsync: &str,
    max_concurrency: usize,
) -> anyhow::Result<OperatorConfig> {
    write_config_with(dir, sim, plugins, fsync, max_concurrency, "")
}

/// [`write_config`] with `tables` (whole TOML tables, e.g. `[service.syslog]`) added after
/// `[service.server]`.
pub fn write_config_with(
    dir: &Path,
    sim: &SimHandle,
    plugins: &[PluginEntry],
    fsync: &str,
    max_concurrency: usize,
    tables: &str,
) -> anyhow::Result<OperatorConfig> {
    std::fs::create_dir_all(dir)?;
    let credentials = dir.join("credentials");
    std::fs::write(
        &credentials,
        format!("username = {USER}\npassword = {PASSWORD}\n"),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600))?;
    let mut toml = format!(
        r#"[service]
poll_interval_secs = 1
overlap_window_secs = 60
max_concurrency = {max_concurrency}
database = "{db}"

[service.audit]
path = "{audit}"
fsync = {fsync}

[service.server]
base_url = "{url}"
credentials_file = "{credentials}"
"#,
        db = dir.join("riposte.db").display(),
        audit = dir.join("audit.jsonl").display(),
        url = sim.base_url(),
        credentials = credentials.display(),
    );
    toml.push_str(tables);
    let path = dir.join("riposte.toml");
    let with_parts = plugins_toml(toml.clone(), plugins, true)?;
    std::fs::write(&path, &with_parts)?;
    match OperatorConfig::load(&path) {
        Err(e) if e.to_string().contains("malop_parts") => {
            // A service from before issue 15 reads every part and knows no `malop_parts`.
            PARTS_UNKNOWN.store(true, std::sync::atomic::Ordering::Relaxed);
            std::fs::write(&path, plugins_toml(toml, plugins, false)?)?;
            Ok(OperatorConfig::load(&path)?)
        }
        loaded => Ok(loaded?),
    }
}

/// Set when the configuration refused `malop_parts` (a service from before issue 15): the
/// services of this run read every part.
pub static PARTS_UNKNOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `toml` followed by the `[[plugins]]` entries, `malop_parts` included when `parts`.
fn plugins_toml(mut toml: String, plugins: &[PluginEntry], parts: bool) -> anyhow::Result<String> {
    for p in plugins {
        let path = plugin_path(&p.component);
        let digest = Sha256Digest::of(&std::fs::read(&path)?).to_hex();
        let list = |items: &[&str]| {
            items
                .iter()
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            &mut toml,
            "\n[[plugins]]\nname = \"{}\"\npath = \"{}\"\nsha256 = \"{digest}\"\nmode = \"{}\"\n{}\
             [plugins.limits]\nwall_clock_ms = 60000\n[plugins.grants]\noperations = [{}]\nremediation = [{}]\n",
            p.name,
            path.display(),
            p.mode,
            if parts && !p.parts.is_empty() {
                format!("malop_parts = [{}]\n", list(p.parts))
            } else {
                String::new()
            },
            list(p.operations),
            list(p.remediation),
        )?;
        // The benchmarks make thousands of calls per invocation on purpose: the quotas are
        // raised to their maximum so they are checked (and timed) but never refuse.
        toml.push_str(
            "[plugins.quotas]\nqueries_per_invocation = 100000\nqueries_per_minute = 100000\n\
             kv_writes_per_invocation = 100000\nkv_writes_per_minute = 100000\ncalls_per_invocation = 100000\n",
        );
        if !p.values.is_empty() {
            toml.push_str("[plugins.values]\n");
            for (k, v) in &p.values {
                writeln!(toml, "{k} = \"{v}\"")?;
            }
        }
    }
    Ok(toml)
}

/// Copies precompiled artifacts from `from` into the cache dir the service at `config` uses,
/// so a service start does not compile the Python plugin again.
pub fn seed_cache(from: &Path, config: &OperatorConfig) -> anyhow::Result<()> {
    let to = config.artifact_dir();
    std::fs::create_dir_all(&to)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o700))?;
    if from.is_dir() {
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Starts a service on `config` with the real client (remediations not followed).
pub async fn service(config: OperatorConfig, client: Arc<Client>) -> anyhow::Result<Service> {
    let follow = FollowPolicy {
        poll_interval: Duration::ZERO,
        max_polls: 2,
        ..FollowPolicy::default()
    };
    Service::start(
        config,
        client,
        follow,
        Arc::new(riposte_metrics::Metrics::new()),
    )
    .await
}

/// A plain HTTP client (no redirects followed) and the session cookie of a form login to
/// `base` as the bench user: what a script would start with.
pub async fn login_plain(base: &str) -> anyhow::Result<(reqwest::Client, String)> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = http
        .post(format!("{base}/login.html"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("username={USER}&password={PASSWORD}").replace('@', "%40"))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("JSESSIONID="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
        .context("no session cookie from the simulator")?;
    Ok((http, format!("JSESSIONID={cookie}")))
}

/// The raw `crimes/unified` body for `kind`, as the client requests it, fetched over HTTP.
pub async fn raw_crimes_unified(sim: &SimHandle, kind: ElementKind) -> anyhow::Result<Vec<u8>> {
    let base = sim.base_url();
    let (http, cookie) = login_plain(&base).await?;
    let body = serde_json::json!({"totalResultLimit": 10_000, "perGroupLimit": 10_000,
        "perFeatureLimit": 100, "templateContext": "MALOP", "customFields": [],
        "queryPath": [{"requestedType": kind.as_api(), "result": true, "filters": []}]});
    let reply = http
        .post(format!("{base}/rest/crimes/unified"))
        .header("cookie", cookie)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(
        reply.status().is_success(),
        "crimes/unified: {}",
        reply.status()
    );
    Ok(reply.bytes().await?.to_vec())
}
