//! Runaway and hostile plugins are stopped by the sandbox with a reason in plain words,
//! while a well-behaved plugin running at the same time completes (G2).

use riposte_e2e::{dry_run, fixture, load, runtime};
use riposte_runtime::{Limits, Outcome, StopReason};
use std::time::{Duration, Instant};

/// Tight limits, so each attack trips the limit it targets quickly.
fn tight() -> Limits {
    Limits {
        fuel: 50_000_000_000,
        wall_clock: Duration::from_millis(500),
        memory_bytes: 32 << 20,
        output_bytes: 16 << 10,
        ..Limits::default()
    }
}

/// Runs the hostile plugin with `attack` next to reputation-feed on the same runtime, and
/// returns the hostile plugin's stop reason and how long it ran.
async fn contain(attack: &str, limits: Limits) -> (StopReason, Duration) {
    let (runtime, cache) = runtime();
    let hostile = load(&runtime, &cache, "hostile");
    let good = load(&runtime, &cache, "reputation-feed");
    let malop = fixture("known-malware");
    let defaults = Limits::default();
    let started = Instant::now();
    let (bad, fine) = tokio::join!(
        async {
            let run = dry_run(&runtime, &hostile, &malop, &[("attack", attack)], &limits).await;
            (run, started.elapsed())
        },
        dry_run(&runtime, &good, &malop, &[], &defaults),
    );
    assert_eq!(
        fine.report.outcome,
        Outcome::Completed,
        "the well-behaved plugin completes next to `{attack}`"
    );
    assert_eq!(fine.actions().len(), 2, "and does its work");
    let (bad, elapsed) = bad;
    match bad.report.outcome {
        Outcome::Stopped { reason } => (reason, elapsed),
        other => panic!("`{attack}` was not stopped: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_at_the_time_limit() {
    let limits = tight();
    let (reason, elapsed) = contain("loop", limits.clone()).await;
    assert_eq!(reason, StopReason::TimeLimit);
    assert!(
        elapsed < limits.wall_clock + Duration::from_millis(100),
        "stopped within the limit plus 100 ms, took {elapsed:?}"
    );
    assert!(reason.to_string().contains("time limit"), "{reason}");
}

#[tokio::test]
async fn an_infinite_loop_runs_out_of_fuel_when_fuel_is_the_tighter_limit() {
    let limits = Limits {
        fuel: 20_000_000,
        ..tight()
    };
    let (reason, _) = contain("loop", limits).await;
    assert_eq!(reason, StopReason::OutOfFuel);
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let (reason, _) = contain("memory", tight()).await;
    assert_eq!(reason, StopReason::MemoryLimit, "{reason}");
}

#[tokio::test]
async fn unbounded_recursion_overflows_the_stack() {
    let (reason, _) = contain("recursion", tight()).await;
    assert_eq!(reason, StopReason::StackOverflow, "{reason}");
}

#[tokio::test]
async fn a_stdout_flood_hits_the_output_cap() {
    let (reason, _) = contain("flood", tight()).await;
    assert_eq!(reason, StopReason::OutputCap, "{reason}");
}

#[tokio::test]
async fn a_log_flood_hits_the_output_cap() {
    let (reason, _) = contain("log-flood", tight()).await;
    assert_eq!(reason, StopReason::OutputCap, "{reason}");
}

/// `describe` runs at load, before any grant or quota applies: every import is refused, so it
/// can neither reach the server nor pile up kv values in the host.
#[tokio::test]
async fn describe_cannot_call_the_host() {
    let (runtime, cache) = runtime();
    let hostile = load(&runtime, &cache, "hostile");
    let info = runtime.describe(&hostile).await.unwrap();
    assert!(
        info.description.contains("describe probe: kv refused"),
        "{}",
        info.description
    );
}

/// Empty messages cost the output budget too: each is a line of riposte's log.
#[tokio::test]
async fn an_empty_log_flood_hits_the_output_cap() {
    let (reason, _) = contain("empty-log-flood", tight()).await;
    assert_eq!(reason, StopReason::OutputCap, "{reason}");
}

/// Reading kv in a loop stops at `MAX_KV_READS` reads, long before the time limit: every
/// read takes the database lock the other plugins' ledger writes need.
#[tokio::test]
async fn a_kv_read_flood_is_stopped_after_its_reads() {
    let (reason, _) = contain("kv-read-flood", tight()).await;
    assert_trapped(reason, "at most 1024 kv.get calls per invocation");
}

/// A call handing the host more than `MAX_CALL_BYTES` (six 1 MiB strings) traps before
/// wasmtime copies it all: the host's memory is not the plugin's to fill.
#[tokio::test]
async fn a_call_of_megabytes_is_stopped_before_it_is_copied() {
    let (reason, _) = contain("call-megabytes", tight()).await;
    assert_trapped(reason, "too much data");
}

/// Asserts that the plugin was stopped by a trap whose message says `says`.
fn assert_trapped(reason: StopReason, says: &str) {
    match reason {
        StopReason::Trap(message) => assert!(message.contains(says), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let (reason, _) = contain("panic", tight()).await;
    match reason {
        StopReason::Panic(message) => {
            assert!(
                message.contains("hostile plugin panicked on purpose"),
                "{message}"
            )
        }
        other => panic!("expected a panic, got {other:?}"),
    }
}

/// stdout, stderr and log messages draw from one output budget: a plugin writing to all
/// three in turn is stopped once their sum reaches the cap, not three times the cap.
#[tokio::test]
async fn stdout_stderr_and_log_together_hit_one_output_cap() {
    let (runtime, cache) = runtime();
    let hostile = load(&runtime, &cache, "hostile");
    let limits = tight();
    let run = dry_run(
        &runtime,
        &hostile,
        &fixture("known-malware"),
        &[("attack", "mixed-flood")],
        &limits,
    )
    .await;
    assert_eq!(
        run.report.outcome,
        Outcome::Stopped {
            reason: StopReason::OutputCap
        }
    );
    let logged: usize = run.logs().iter().map(String::len).sum();
    let total = run.report.stdout.len() + run.report.stderr.len() + logged;
    assert!(
        total <= limits.output_bytes,
        "{total} bytes of output against a cap of {}",
        limits.output_bytes
    );
    assert!(
        !run.report.stdout.is_empty() && !run.report.stderr.is_empty() && logged > 0,
        "all three were written to"
    );
    assert!(
        total > limits.output_bytes - 4096,
        "the cap was used up: {total}"
    );
}

/// Pool slots are reused, and the runtime keeps their pages resident between instances
/// (`RuntimeConfig::keep_resident_bytes`): an invocation must still start from the
/// component's own memory, never from what the previous one in that slot left. The attack
/// fills a static and a freshly grown page and fails if it finds them filled already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_never_sees_the_memory_an_earlier_one_left() {
    let (runtime, cache) = runtime();
    let hostile = load(&runtime, &cache, "hostile");
    let malop = fixture("known-malware");
    let limits = Limits::default();
    let attack = [("attack", "residue")];
    for round in 0..4 {
        // One after another (the same slot again), then side by side (several slots).
        for _ in 0..8 {
            let run = dry_run(&runtime, &hostile, &malop, &attack, &limits).await;
            assert_eq!(run.report.outcome, Outcome::Completed, "round {round}");
        }
        let side_by_side = futures::future::join_all(
            (0..8).map(|_| dry_run(&runtime, &hostile, &malop, &attack, &limits)),
        )
        .await;
        for run in side_by_side {
            assert_eq!(run.report.outcome, Outcome::Completed, "round {round}");
        }
    }
}
