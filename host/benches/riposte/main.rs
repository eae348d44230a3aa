//! riposte's benchmarks: `cargo bench -p riposte-benches --bench riposte`.
//!
//! Runs the seven measurements of issue 7, the per-language one of issue 17 (section 8),
//! the several-hosts one of issue 14 (section 9, PostgreSQL) and issue 15's events, cores and
//! server requests (section 10) in one process, each against its floor where the issue asks for one (bare wasmtime doing the
//! same work, a bare call, the Rust rule), and writes
//! `host/benches/results/results.json` and `RESULTS.md` with the machine's description.
//! Nothing here asserts a time; goals are reported as met or not, with the figures.
//!
//! `RIPOSTE_BENCH_ONLY=1,3,7` runs a subset (the results files are then not written unless
//! `RIPOSTE_BENCH_WRITE=1`, which merges the subset into the existing results.json); `RIPOSTE_BENCH_REPORT_ONLY=1` re-renders RESULTS.md from
//! results.json, before-after.json and notes.md without measuring. `RIPOSTE_BENCH_PARTS=c`
//! runs only those parts of section 10 (for a profile; the parts left out are recorded as
//! not run, so do not write such a run's results).
//!
//! `RIPOSTE_BENCH_BEFORE=<an earlier harness executable>` compares sections 1–3 of that build
//! and of this one, run alternately (issue 13's before/after), into
//! `host/benches/results/before-after.json`; see [`compare`].
//!
//! Section 9 needs a PostgreSQL server: the one `RIPOSTE_TEST_POSTGRES` names, or else the
//! harness starts a throwaway cluster with `tests/postgres.sh start` (as root it installs
//! Debian's `postgresql` package if needed) and stops and removes it when it ends. It also
//! runs the `riposte` binary, built first with `cargo build -p riposte` (of this profile).

mod bare;
mod compare;
mod containment;
mod fixtures;
mod fleet;
mod issue15;
mod languages;
mod latency;
mod load;
mod memory;
mod report;
mod script;
mod util;

use serde_json::{Value, json};
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: util::Counting = util::Counting;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a harness = false binary ignores its arguments.
    let root = fixtures::root();
    let out = root.join("host/benches/results");
    if let Some(before) = std::env::var_os(compare::BEFORE_ENV) {
        // Before/after: runs the earlier harness and this one alternately (sections 1–3).
        compare::run(&root, std::path::Path::new(&before))?;
        return render(&out);
    }
    if std::env::var_os(compare::SUMMARY_ENV).is_some() {
        compare::summarise(&root)?;
        return render(&out);
    }
    let measuring = std::env::var_os(memory::CHILD_ENV).is_none()
        && std::env::var_os("RIPOSTE_BENCH_REPORT_ONLY").is_none();
    // Before any thread starts (it may set RIPOSTE_TEST_POSTGRES); stopped when dropped.
    let postgres = fleet::Postgres::before_threads(measuring && wanted(9));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(mode) = std::env::var(memory::CHILD_ENV) {
        return runtime.block_on(memory::child(&mode));
    }
    if std::env::var("RIPOSTE_BENCH_REPORT_ONLY").is_ok() {
        // Re-renders RESULTS.md from results.json (after editing notes.md), measuring nothing.
        return render(&out);
    }
    // On a worker thread, as the service runs (riposte's `main` spawns the command): an
    // invocation's task then starts on the same worker, and a worker stepping aside for a
    // database step costs what it costs in the service.
    let postgres = std::sync::Arc::new(postgres);
    let result = runtime.block_on(util::on_worker(run(postgres.clone())));
    drop(runtime);
    drop(postgres);
    result
}

/// Section 10 measured at the commit before issue 15's service changes: the document a run
/// of that commit's harness printed with `RIPOSTE_BENCH_ONLY=10` (see notes.md).
const ISSUE15_BEFORE: &str = "issue15-before.json";

/// RESULTS.md from results.json, before-after.json and issue15-before.json (if there are
/// any) and notes.md.
fn render(out: &std::path::Path) -> anyhow::Result<()> {
    let doc: Value = serde_json::from_slice(&std::fs::read(out.join("results.json"))?)?;
    std::fs::write(out.join("RESULTS.md"), markdown(out, &doc)?)?;
    eprintln!("wrote {}/RESULTS.md", out.display());
    Ok(())
}

/// The report of `doc`, with the before/after comparisons kept next to it.
fn markdown(out: &std::path::Path, doc: &Value) -> anyhow::Result<String> {
    let before_after = read_optional(&out.join(compare::FILE))?;
    let issue15_before = read_optional(&out.join(ISSUE15_BEFORE))?;
    Ok(report::markdown(
        doc,
        before_after.as_ref(),
        issue15_before.as_ref(),
    ))
}

/// A JSON document, or `None` when the file does not exist.
fn read_optional(path: &std::path::Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice::<Value>(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn wanted(n: u32) -> bool {
    match std::env::var("RIPOSTE_BENCH_ONLY") {
        Ok(list) => list.split(',').any(|x| x.trim() == n.to_string()),
        Err(_) => true,
    }
}

async fn section<F>(results: &mut serde_json::Map<String, Value>, n: u32, name: &str, f: F)
where
    F: std::future::Future<Output = anyhow::Result<Value>>,
{
    if !wanted(n) {
        return;
    }
    eprintln!("[{n}/10] {name} ...");
    let started = Instant::now();
    let mut value = match f.await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("      failed: {e:#}");
            json!({"error": format!("{e:#}")})
        }
    };
    let took = started.elapsed().as_secs_f64();
    eprintln!("      done in {took:.1} s");
    value["section_seconds"] = json!(util::round(took));
    results.insert(format!("{n}_{name}"), value);
}

async fn run(postgres: std::sync::Arc<fleet::Postgres>) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = fixtures::root();
    // Section 10 alone needs only the Rust examples.
    fixtures::ensure_plugins(!(1..=9).any(wanted))?;
    let work = root.join("target/bench-work");
    std::fs::create_dir_all(&work)?;
    let python_cache = work.join("python-artifacts");

    // A detailed Malop from the simulator, fetched by the real client: the invocation input.
    let sim = fixtures::simulator(8, 1).await?;
    let client = fixtures::client(&sim).await?;
    let malops = fixtures::detailed_malops(&client).await?;
    let malop = fixtures::pick(&malops, "RANSOMWARE").clone();

    let mut results = serde_json::Map::new();
    section(
        &mut results,
        1,
        "invocation_latency",
        latency::invocation(&malop),
    )
    .await;
    section(
        &mut results,
        2,
        "host_call_cost",
        latency::host_calls(&malop, &sim, client.clone(), &work),
    )
    .await;
    // Python before throughput and memory: its compile fills the artifact cache they reuse.
    section(
        &mut results,
        5,
        "python_plugin",
        load::python(&malop, &python_cache),
    )
    .await;
    section(
        &mut results,
        3,
        "throughput",
        load::throughput(&work, &python_cache),
    )
    .await;
    section(&mut results, 4, "parse_10k_malops", load::parsing()).await;
    section(
        &mut results,
        6,
        "memory",
        memory::memory(&sim, &malops, &work, &python_cache),
    )
    .await;
    section(
        &mut results,
        7,
        "containment_latency",
        containment::containment(&work),
    )
    .await;
    section(
        &mut results,
        8,
        "languages",
        languages::languages(&malop, &work),
    )
    .await;
    section(
        &mut results,
        9,
        "postgres_fleet",
        fleet::fleet(&work, &postgres),
    )
    .await;
    section(&mut results, 10, "issue15", issue15::issue15(&work)).await;
    sim.shutdown().await;

    let out = root.join("host/benches/results");
    let partial = std::env::var("RIPOSTE_BENCH_ONLY").is_ok();
    let mut machine = util::machine(&root);
    if partial && std::env::var("RIPOSTE_BENCH_WRITE").is_ok() {
        // Keep the sections this run did not measure, and the machine block that describes
        // them, from the last full run; each section measured now carries its own run's.
        if let Ok(bytes) = std::fs::read(out.join("results.json"))
            && let Ok(old) = serde_json::from_slice::<Value>(&bytes)
            && let Value::Object(old_results) = old["results"].clone()
        {
            for value in results.values_mut() {
                value["run"] = machine.clone();
            }
            for (key, value) in old_results {
                results.entry(key).or_insert(value);
            }
            machine = old["machine"].clone();
        }
    }
    let doc = json!({
        "machine": machine,
        "command": "cargo bench -p riposte-benches --bench riposte",
        "total_seconds": util::round(started.elapsed().as_secs_f64()),
        "results": results,
    });
    if !partial || std::env::var("RIPOSTE_BENCH_WRITE").is_ok() {
        std::fs::create_dir_all(&out)?;
        std::fs::write(
            out.join("results.json"),
            serde_json::to_string_pretty(&doc)? + "\n",
        )?;
        std::fs::write(out.join("RESULTS.md"), markdown(&out, &doc)?)?;
        eprintln!("wrote {}/RESULTS.md and results.json", out.display());
    } else {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(())
}
