//! 6. Memory: the idle service (a child process) and each concurrent plugin instance.

use crate::fixtures::{self, PluginEntry};
use crate::util;
use anyhow::Context as _;
use riposte_domain::{
    ActionRequest, CallError, Malop, MalopId, Receipt, RemediationProgress, TimestampMs,
};
use riposte_runtime::{
    BoxFuture, CallContext, Entry, Limits, LogLevel, PluginHost, Runtime, RuntimeConfig,
};
use riposte_sim::SimHandle;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Environment variable that turns the bench binary into the idle-service child.
pub const CHILD_ENV: &str = "RIPOSTE_BENCH_CHILD";

/// The child: start the service on the config, run one cycle, idle, report RSS as JSON.
pub async fn child(mode: &str) -> anyhow::Result<()> {
    let rss_start = util::rss();
    let report = if mode == "empty" {
        json!({"rss_bytes": rss_start})
    } else {
        let config = riposte_service::OperatorConfig::load(mode)?;
        let server = config
            .service
            .server
            .clone()
            .context("no [service.server]")?;
        let credentials_file = server
            .credentials_file
            .clone()
            .context("no credentials_file in [service.server]")?;
        let text = std::fs::read_to_string(&credentials_file)?;
        let password = text
            .lines()
            .find_map(|l| l.strip_prefix("password = "))
            .unwrap_or_default()
            .to_owned();
        let client = Arc::new(riposte_client::Client::new(
            riposte_client::ClientConfig::new(
                server.base_url.clone(),
                riposte_client::Credentials::new(fixtures::USER, password),
            ),
        )?);
        let service = fixtures::service(config, client).await?;
        let started_rss = util::rss();
        let cycle = service.run_cycle().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        json!({
            "rss_bytes": util::rss(), "rss_after_start_bytes": started_rss,
            "rss_process_start_bytes": rss_start, "peak_rss_bytes": util::proc_status_bytes("VmHWM"),
            "plugins": service.plugins().len(), "cycle_invocations": cycle.invocations,
        })
    };
    println!("{report}");
    Ok(())
}

async fn run_child(arg: &str) -> anyhow::Result<Value> {
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    let out = command.env(CHILD_ENV, arg).output().await?;
    anyhow::ensure!(
        out.status.success(),
        "child {arg} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    Ok(serde_json::from_str(line)?)
}

/// A host whose every server-bound call waits until released: holds instances alive.
struct Parked {
    entered: AtomicUsize,
    release: Semaphore,
}

impl Parked {
    fn new() -> Self {
        Self {
            entered: AtomicUsize::new(0),
            release: Semaphore::new(0),
        }
    }

    fn park<'a, T: Send + 'a>(&'a self, value: T) -> BoxFuture<'a, T> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if let Ok(p) = self.release.acquire().await {
                p.forget();
            }
            value
        })
    }
}

fn receipt() -> Result<Receipt, CallError> {
    Ok(Receipt {
        action_id: "parked".into(),
        disposition: riposte_domain::Disposition::Shadowed,
        detail: String::new(),
    })
}

impl PluginHost for Parked {
    fn list_malops<'a>(
        &'a self,
        _: &'a CallContext,
        _: TimestampMs,
        _: TimestampMs,
    ) -> BoxFuture<'a, Result<Vec<Malop>, CallError>> {
        self.park(Ok(Vec::new()))
    }

    fn get_malop<'a>(
        &'a self,
        _: &'a CallContext,
        id: MalopId,
    ) -> BoxFuture<'a, Result<Malop, CallError>> {
        self.park(Err(CallError::NotFound(id.to_string())))
    }

    fn act<'a>(
        &'a self,
        _: &'a CallContext,
        _: ActionRequest,
        _: String,
    ) -> BoxFuture<'a, Result<Receipt, CallError>> {
        self.park(receipt())
    }

    fn remediation_status<'a>(
        &'a self,
        _: &'a CallContext,
        _: String,
    ) -> BoxFuture<'a, Result<RemediationProgress, CallError>> {
        self.park(Ok(RemediationProgress::Unknown))
    }

    fn kv_get(&self, _: &CallContext, _: &str) -> Option<Vec<u8>> {
        None
    }

    fn kv_set(&self, _: &CallContext, _: &str, _: Vec<u8>) -> Result<(), CallError> {
        Ok(())
    }

    fn kv_delete(&self, _: &CallContext, _: &str) {}

    fn log(&self, _: &CallContext, _: LogLevel, _: &str) {}
}

/// RSS and heap growth while `k` instances of `name` are parked in a host call.
pub async fn per_instance(
    runtime: &Arc<Runtime>,
    name: &str,
    malop: &Malop,
    k: usize,
    cache: &riposte_runtime::ArtifactCache,
) -> anyhow::Result<Value> {
    let bytes = fixtures::plugin_bytes(name)?;
    let plugin = Arc::new(runtime.load(name, &bytes, Some(cache))?);
    let mut rounds = Vec::new();
    for _ in 0..2 {
        let host = Arc::new(Parked::new());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss0 = util::rss();
        let heap0 = util::heap_live();
        let mut tasks = Vec::new();
        for _ in 0..k {
            let (runtime, plugin, host, malop) =
                (runtime.clone(), plugin.clone(), host.clone(), malop.clone());
            tasks.push(tokio::spawn(async move {
                let call = CallContext::for_malop(plugin.identity(), &malop, Arc::default());
                runtime
                    .invoke(
                        &plugin,
                        &Limits::default(),
                        host,
                        call,
                        Entry::Malop(&malop),
                    )
                    .await
            }));
        }
        while host.entered.load(Ordering::SeqCst) < k {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rss1 = util::rss();
        let heap1 = util::heap_live();
        host.release.add_permits(k * 8);
        let mut peak_memory = 0;
        for t in tasks {
            peak_memory = t.await?.peak_memory;
        }
        rounds.push((
            rss1.saturating_sub(rss0) / k as u64,
            heap1.saturating_sub(heap0) / k,
            peak_memory,
        ));
    }
    // The second round runs on warm pool slots: the steady state.
    let (rss, heap, linear) = rounds[1];
    Ok(json!({
        "plugin": name, "concurrent_instances": k,
        "rss_per_instance_bytes": rss, "host_heap_per_instance_bytes": heap,
        "linear_memory_peak_bytes": linear,
        "first_round_rss_per_instance_bytes": rounds[0].0,
    }))
}

/// Section 6.
pub async fn memory(
    sim: &SimHandle,
    malops: &[Malop],
    work: &Path,
    python_cache: &Path,
) -> anyhow::Result<Value> {
    let empty = run_child("empty").await?;
    let dir = work.join("idle-service");
    let _ = std::fs::remove_dir_all(&dir);
    let mut entries: Vec<PluginEntry> = ["ransomware-containment", "cleanup", "reputation-feed"]
        .iter()
        .map(|n| PluginEntry::new(n, n, "shadow"))
        .collect();
    entries.push(PluginEntry::new("python-triage", "python-triage", "shadow"));
    let config = fixtures::write_config(&dir, sim, &entries, "\"never\"", 4)?;
    fixtures::seed_cache(python_cache, &config)?;
    let config_path = dir.join("riposte.toml");
    let idle = run_child(&config_path.display().to_string()).await?;

    let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
    let cache = riposte_runtime::ArtifactCache::open(python_cache)?;
    let mut ransomware = crate::fixtures::pick(malops, "RANSOMWARE").clone();
    for m in &mut ransomware.machines {
        m.connected = true;
        m.isolated = false;
    }
    let triaged = crate::load::python_malop(&ransomware, true);
    let rust = per_instance(&runtime, "ransomware-containment", &ransomware, 32, &cache).await?;
    let python = per_instance(&runtime, "python-triage", &triaged, 8, &cache).await?;
    Ok(json!({
        "bench_binary_empty_rss_bytes": empty["rss_bytes"],
        "idle_service": idle,
        "per_instance": [rust, python],
        "method": "Idle service: a child process (this bench binary re-executed) starts the service with the four example plugins (Python from the artifact cache), runs one cycle against the simulator, idles 2 s, reads VmRSS. The 'empty' child is the same binary doing nothing. Per instance: k invocations parked inside a host call (so each instance is live, its memory initialised), RSS growth / k; second of two rounds (warm pool slots).",
    }))
}
