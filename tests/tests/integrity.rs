//! Integrity (issue 4, G7 and G10): a plugin whose sha256 pin does not match is refused at
//! `Service::start`; a tampered precompiled artifact is refused before wasmtime sees it and
//! recompiled from the verified component; `riposte audit verify` (the real binary) names
//! the first bad record of a real service audit trail after every kind of tampering.

use riposte::domain::Sha256Digest;
use riposte::runtime::{ArtifactCache, Limits, Outcome, Runtime, RuntimeConfig};
use riposte_e2e::gate_support::{PASSWORD, Plugin, World, invocations, status};
use riposte_e2e::{dry_run, fixture, plugin_path, riposte_bin};
use std::path::{Path, PathBuf};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_mismatch_refuses_to_start_the_service() {
    let world = World::new(2).await;
    let wrong = Plugin::new("x", "hostile").digest();
    let cleanup = Plugin::new("cleanup", "cleanup")
        .grant(&["remediate"])
        .remediation(&["quarantine-file"]);
    let actual = cleanup.digest();
    let plugins = [
        Plugin::new("feed", "reputation-feed").grant(&["set-reputation"]),
        cleanup.pin(&wrong.to_hex()),
    ];
    let error = match world.start("", &plugins).await {
        Ok(_) => panic!("a service with a mismatched pin started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("pin mismatch"), "{error}");
    assert!(error.contains("`cleanup`"), "names the plugin: {error}");
    assert!(
        error.contains(&format!("pins {}", wrong.to_hex())),
        "names the expected digest: {error}"
    );
    assert!(
        error.contains(&format!("the component is {}", actual.to_hex())),
        "names the actual digest: {error}"
    );
    assert!(
        world.sim.requests().is_empty(),
        "nothing ran, not even a login"
    );
}

/// The single `.cwasm` file in a cache directory.
fn artifact_in(dir: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one artifact in {}: {found:?}",
        dir.display()
    );
    found[0].clone()
}

fn flip(path: &Path, at: impl Fn(usize) -> usize) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at(bytes.len());
    bytes[i] ^= 0x5a;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[tokio::test]
async fn a_tampered_precompiled_artifact_is_refused_and_recompiled() {
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let engine = runtime.engine();
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path()).unwrap();
    let bytes = std::fs::read(plugin_path("cleanup")).unwrap();
    let sha = Sha256Digest::of(&bytes).to_hex();
    runtime.load("cleanup", &bytes, Some(&cache)).unwrap();
    let artifact = artifact_in(dir.path());
    assert_eq!(artifact, cache.artifact_path(engine, &sha));
    assert!(
        cache
            .load_precompiled(engine, "cleanup", &sha)
            .unwrap()
            .is_some()
    );
    let authentic = std::fs::read(&artifact).unwrap();

    // One byte of the compiled code, then one byte of the tag.
    for (what, at) in [
        (
            "code",
            Box::new(|n: usize| n / 2) as Box<dyn Fn(usize) -> usize>,
        ),
        ("tag", Box::new(|_| 0)),
    ] {
        std::fs::write(&artifact, &authentic).unwrap();
        flip(&artifact, at);
        let error = match cache.load_precompiled(engine, "cleanup", &sha) {
            Ok(_) => panic!("a tampered artifact ({what}) was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("authentication"), "{what}: {error}");
        assert!(error.contains("refused"), "{what}: {error}");
    }

    // An artifact this host did not write (another cache's key) is refused too.
    let other_dir = tempfile::tempdir().unwrap();
    let other = ArtifactCache::open(other_dir.path()).unwrap();
    other
        .load_or_compile(engine, "cleanup", &sha, &bytes)
        .unwrap();
    std::fs::copy(artifact_in(other_dir.path()), &artifact).unwrap();
    let error = cache.load_precompiled(engine, "cleanup", &sha).err();
    assert!(
        error.is_some_and(|e| e.to_string().contains("authentication")),
        "a foreign artifact is refused"
    );

    // An authentic artifact of another component, moved under this one's name, is refused.
    let hostile = std::fs::read(plugin_path("hostile")).unwrap();
    let hostile_sha = Sha256Digest::of(&hostile).to_hex();
    cache
        .load_or_compile(engine, "hostile", &hostile_sha, &hostile)
        .unwrap();
    std::fs::copy(cache.artifact_path(engine, &hostile_sha), &artifact).unwrap();
    let error = cache.load_precompiled(engine, "cleanup", &sha).err();
    assert!(
        error.is_some_and(|e| e.to_string().contains("authentication")),
        "a swapped artifact is refused"
    );

    // load_or_compile recompiles from the verified component, writes a good artifact, and
    // the plugin works.
    flip(&artifact, |n| n / 2);
    let plugin = runtime.load("cleanup", &bytes, Some(&cache)).unwrap();
    assert!(
        cache
            .load_precompiled(engine, "cleanup", &sha)
            .unwrap()
            .is_some()
    );
    let run = dry_run(
        &runtime,
        &plugin,
        &fixture("cleanup"),
        &[],
        &Limits::default(),
    )
    .await;
    assert_eq!(run.report.outcome, Outcome::Completed);
    assert!(!run.actions().is_empty(), "and does its work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_recompiles_over_tampered_artifacts_and_runs() {
    let mut world = World::new(2).await;
    world.shared_cache = false;
    let plugins = [
        Plugin::new("feed", "reputation-feed").grant(&["get-malop", "set-reputation"]),
        Plugin::new("cleanup", "cleanup")
            .grant(&["get-malop", "remediate"])
            .remediation(&["quarantine-file", "delete-registry-key"]),
    ];
    drop(world.start("", &plugins).await.expect("the first start"));
    let mut tampered = Vec::new();
    for entry in std::fs::read_dir(world.artifact_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            tampered.push((path.clone(), flip(&path, |n| n / 2)));
        }
    }
    assert_eq!(tampered.len(), 2, "one artifact per plugin");
    let service = world
        .start("", &plugins)
        .await
        .expect("a tampered artifact is recompiled, not fatal");
    for (path, bad) in &tampered {
        assert_ne!(
            &std::fs::read(path).unwrap(),
            bad,
            "{} was rewritten",
            path.display()
        );
    }
    service.run_cycle().await.unwrap();
    let records = world.audit();
    for plugin in ["feed", "cleanup"] {
        let runs = invocations(&records, plugin);
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|r| status(r) == "completed"), "{runs:?}");
    }
}

/// Runs `riposte audit verify <file>`: (success, stdout + stderr).
fn verify(file: &Path) -> (bool, String) {
    let out = Command::new(riposte_bin())
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .expect("riposte runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A copy of the trail and its head file in `dir`, with `tamper` applied to its lines.
fn tampered_copy(
    source: &Path,
    dir: &Path,
    name: &str,
    tamper: impl FnOnce(&mut Vec<String>) -> String,
) -> PathBuf {
    let text = std::fs::read_to_string(source).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let contents = tamper(&mut lines);
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, contents).unwrap();
    std::fs::copy(
        riposte::audit::head_path(source),
        riposte::audit::head_path(&path),
    )
    .unwrap();
    path
}

fn joined(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_the_first_bad_record_after_each_kind_of_tampering() {
    let world = World::new(3).await;
    let plugins = [
        Plugin::new("feed", "reputation-feed").grant(&["get-malop", "set-reputation"]),
        Plugin::new("cleanup", "cleanup")
            .grant(&["get-malop", "remediate"])
            .remediation(&["quarantine-file", "delete-registry-key"]),
    ];
    let service = world.start("", &plugins).await.unwrap();
    service.run_cycle().await.unwrap();
    service.sync_audit().unwrap();
    drop(service);
    let trail = world.audit_path();
    let text = std::fs::read_to_string(&trail).unwrap();
    assert!(
        !text.contains(PASSWORD),
        "never a secret in the audit trail"
    );
    let n = text.lines().count();
    assert!(n >= 10, "a real trail: {n} records");

    let (ok, text) = verify(&trail);
    assert!(ok, "the untouched trail verifies: {text}");
    assert!(text.contains(&format!("ok: {n} records")), "{text}");

    let k = n / 2;
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, PathBuf, usize, &str)> = vec![
        (
            "edited",
            tampered_copy(&trail, dir.path(), "edited", |lines| {
                let line = &mut lines[k - 1];
                let at = line.find("\"time_ms\":").unwrap() + "\"time_ms\":".len() + 3;
                let digit = line.as_bytes()[at];
                let other = if digit == b'9' {
                    '0'
                } else {
                    (digit + 1) as char
                };
                line.replace_range(at..at + 1, &other.to_string());
                joined(lines)
            }),
            k,
            "modified",
        ),
        (
            "deleted",
            tampered_copy(&trail, dir.path(), "deleted", |lines| {
                lines.remove(k - 1);
                joined(lines)
            }),
            k,
            "deleted",
        ),
        (
            "swapped",
            tampered_copy(&trail, dir.path(), "swapped", |lines| {
                lines.swap(k - 1, k);
                joined(lines)
            }),
            k,
            "moved",
        ),
        (
            "truncated mid-record",
            tampered_copy(&trail, dir.path(), "cut", |lines| {
                let mut text = joined(lines);
                text.truncate(text.len() - lines[n - 1].len() / 2);
                text
            }),
            n,
            "truncated",
        ),
        (
            "truncated at a record boundary",
            tampered_copy(&trail, dir.path(), "short", |lines| joined(&lines[..n - 2])),
            // The first missing record.
            n - 1,
            "trailing records were deleted",
        ),
    ];
    for (what, file, line, says) in cases {
        let (ok, text) = verify(&file);
        assert!(!ok, "{what}: verify exited 0: {text}");
        assert!(
            text.contains(&format!("line {line} ")) || text.contains(&format!("line {line}:")),
            "{what}: names line {line}: {text}"
        );
        assert!(text.contains(says), "{what}: says `{says}`: {text}");
    }
}
