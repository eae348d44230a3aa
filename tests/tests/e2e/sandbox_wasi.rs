//! Deny by default (G1): a plugin that tries to read a file, list a directory, write a
//! file, read the environment or its arguments, or open a socket gets nothing.
//! The hostile plugin logs what each probe got; "GOT" would mean the sandbox leaked.

use riposte_e2e::{DryRun, dry_run, fixture, load, runtime};
use riposte_runtime::{Limits, Outcome};

async fn probe(attack: &str) -> DryRun {
    let (runtime, cache) = runtime();
    let hostile = load(&runtime, &cache, "hostile");
    let run = dry_run(
        &runtime,
        &hostile,
        &fixture("ransomware"),
        &[("attack", attack)],
        &Limits::default(),
    )
    .await;
    assert_eq!(
        run.report.outcome,
        Outcome::Completed,
        "{attack}: {:?}",
        run.report
    );
    run
}

fn assert_all_refused(run: &DryRun, expected_probes: usize) {
    let logs = run.logs();
    let leaks: Vec<&String> = logs.iter().filter(|l| l.contains("GOT")).collect();
    assert!(leaks.is_empty(), "the sandbox leaked: {leaks:#?}");
    let refused = logs.iter().filter(|l| l.contains("refused")).count();
    assert_eq!(
        refused, expected_probes,
        "every probe ran and was refused: {logs:#?}"
    );
}

#[tokio::test]
async fn files_cannot_be_read_listed_or_written() {
    // 4 paths x (list + read) + 1 write.
    assert_all_refused(&probe("read-file").await, 9);
}

#[tokio::test]
async fn the_environment_and_arguments_are_empty() {
    let run = probe("env").await;
    assert_all_refused(&run, 2);
    assert!(
        run.logs()
            .contains(&"probe env args: 0 arguments".to_owned()),
        "{:?}",
        run.logs()
    );
}

#[tokio::test]
async fn sockets_cannot_be_opened() {
    // 3 TCP connects + 1 UDP bind.
    assert_all_refused(&probe("socket").await, 4);
}
