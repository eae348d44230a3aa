//! Measuring tools: a counting allocator, percentiles, resident memory, the machine.

use serde_json::{Value, json};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The system allocator, counting live heap bytes and their peak.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters move.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Live heap bytes now.
pub fn heap_live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak measurement at the current live size.
pub fn heap_reset_peak() -> usize {
    let now = heap_live();
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The peak live heap since the last reset.
pub fn heap_peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// A field of /proc/self/status in bytes (`VmRSS`, `VmHWM`).
pub fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resident set size now.
pub fn rss() -> u64 {
    proc_status_bytes("VmRSS")
}

/// Resets the peak RSS (`VmHWM`) to the current RSS (Linux `clear_refs` 5).
pub fn reset_rss_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Percentiles of a sample, in microseconds.
pub fn summary(samples: &[Duration]) -> Value {
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    if us.is_empty() {
        return json!({"n": 0});
    }
    let pct = |p: f64| us[(((us.len() - 1) as f64) * p).round() as usize];
    let mean = us.iter().sum::<f64>() / us.len() as f64;
    json!({
        "n": us.len(), "min_us": round(us[0]), "p50_us": round(pct(0.5)), "p90_us": round(pct(0.9)),
        "p99_us": round(pct(0.99)), "max_us": round(us[us.len() - 1]), "mean_us": round(mean),
    })
}

/// The median of a sample.
pub fn median(samples: &[Duration]) -> Duration {
    let mut v = samples.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The median of figures (the mean of the middle two for an even count); `None` for none.
pub fn median_f64(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Runs `work` on a worker thread of the current runtime, as the service runs (riposte's
/// `main` spawns the command), rather than on the thread that blocks on the runtime.
pub async fn on_worker<T: Send + 'static>(
    work: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))
}

/// Two decimals are plenty.
pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Milliseconds of a duration, rounded.
pub fn ms(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3)
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// What the figures were measured on.
pub fn machine(root: &std::path::Path) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    json!({
        "nproc": nproc,
        "cpu_model": model,
        "memory_gib": round(mem_kb as f64 / 1024.0 / 1024.0),
        "rustc": command("rustc", &["-V"]),
        "kernel": command("uname", &["-sr"]),
        "date_utc": command("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "git_commit": command("git", &["-C", &root.display().to_string(), "rev-parse", "--short", "HEAD"]),
        "wasmtime": "48.0.8",
        "profile": if cfg!(debug_assertions) { "dev (dependencies optimised: opt-level 2; riposte itself unoptimised)" } else { "release (cargo bench)" },
    })
}

/// CPU time this process's threads have run (`/proc/self/task/*/schedstat`, nanoseconds
/// on the CPU), in seconds: those named `name` and all of them. A thread that has exited is
/// no longer counted, so read both ends of a span while the threads measured are alive.
pub fn cpu_seconds(name: &str) -> anyhow::Result<(f64, f64)> {
    let (mut named, mut all) = (0u64, 0u64);
    for task in std::fs::read_dir("/proc/self/task")? {
        let dir = task?.path();
        // A thread may end between the listing and the read: it is then not counted.
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{}/schedstat: unreadable: {stat:?}", dir.display()))?;
        all += ns;
        if comm.trim_end() == name {
            named += ns;
        }
    }
    Ok((named as f64 / 1e9, all as f64 / 1e9))
}
