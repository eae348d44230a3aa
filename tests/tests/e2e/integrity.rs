//! Integrity (issue 4, G7 and G10): a plugin whose sha256 pin does not match is refused at
//! `Service::start`; a tampered precompiled artifact is refused before wasmtime sees it and
//! recompiled from the verified component; `riposte audit verify` (the real binary) names
//! the first bad record of a real service audit trail after every kind of tampering.

use riposte_domain::Sha256Digest;
use riposte_e2e::gate_support::{PASSWORD, Plugin, World, invocations, status};
use riposte_e2e::{dry_run, fixture, plugin_path, riposte_bin};
use riposte_runtime::{ArtifactCache, Limits, Outcome, Runtime, RuntimeConfig};
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

/// Artifacts an earlier release tagged with HMAC-SHA256 (`<64 hex>.cwasm`) are never read
/// again: opening the cache removes them, and nothing else in the directory.
#[test]
fn opening_the_cache_removes_artifacts_of_the_old_format_only() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join(format!("{}.cwasm", "ab".repeat(32)));
    let other = dir.path().join("notes.cwasm");
    std::fs::write(&old, b"an HMAC-tagged artifact").unwrap();
    std::fs::write(&other, b"not ours").unwrap();
    let cache = ArtifactCache::open(dir.path()).unwrap();
    assert!(!old.exists(), "the old artifact is removed");
    assert!(other.exists(), "anything else stays");
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let path = cache.artifact_path(runtime.engine(), &"cd".repeat(32));
    assert!(
        path.to_string_lossy().ends_with(".b3.cwasm"),
        "{}",
        path.display()
    );
    ArtifactCache::open(dir.path()).unwrap();
    assert!(other.exists());
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
        riposte_audit::head_path(source),
        riposte_audit::head_path(&path),
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

/// `riposte <args>` through the real binary: (success, stdout + stderr).
fn riposte(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(riposte_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the riposte binary runs");
    (out.status.success(), riposte_e2e::output_text(&out))
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

/// A publisher's key pair made by `riposte plugin keygen` in `dir`: (secret, public).
fn keygen(dir: &Path, who: &str) -> (PathBuf, PathBuf) {
    let (secret, public) = (
        dir.join(format!("{who}.key")),
        dir.join(format!("{who}.pub")),
    );
    let (ok, out) = riposte(&[
        os("plugin"),
        os("keygen"),
        os("--secret-key"),
        secret.as_os_str(),
        os("--public-key"),
        public.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let secret_text = std::fs::read_to_string(&secret).unwrap();
    assert!(
        !out.contains(secret_text.lines().nth(1).unwrap()),
        "keygen printed the secret key: {out}"
    );
    (secret, public)
}

fn sign(file: &Path, key: &Path, out: &Path) {
    let (ok, text) = riposte(&[
        os("plugin"),
        os("sign"),
        file.as_os_str(),
        os("--key"),
        key.as_os_str(),
        os("-o"),
        out.as_os_str(),
    ]);
    assert!(ok, "{text}");
    let secret_text = std::fs::read_to_string(key).unwrap();
    assert!(
        !text.contains(secret_text.lines().nth(1).unwrap()),
        "{text}"
    );
}

fn verify_signature(file: &Path, key: &Path) -> (bool, String) {
    riposte(&[
        os("plugin"),
        os("verify"),
        file.as_os_str(),
        os("--public-key"),
        key.as_os_str(),
    ])
}

/// Signed plugins (issue 17): with a publisher key pinned, the service refuses an unsigned
/// component, one re-signed by someone else and one modified after signing, before anything
/// compiles or logs in; it loads the validly signed one; `plugin verify` agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_publisher_key_refuses_unsigned_resigned_and_modified_components() {
    let world = World::new(2).await;
    let dir = world.dir.path();
    let (publisher, publisher_pub) = keygen(dir, "publisher");
    let (mallory, mallory_pub) = keygen(dir, "mallory");
    let unsigned = plugin_path("cleanup");
    let signed = dir.join("cleanup-signed.wasm");
    sign(&unsigned, &publisher, &signed);
    let resigned = dir.join("cleanup-resigned.wasm");
    sign(&signed, &mallory, &resigned);
    let modified = dir.join("cleanup-modified.wasm");
    std::fs::copy(&signed, &modified).unwrap();
    flip(&modified, |len| len - 1);

    let (ok, out) = verify_signature(&signed, &publisher_pub);
    assert!(ok && out.contains("signed by key"), "{out}");
    for (file, what) in [
        (&unsigned, "not signed"),
        (&resigned, "signed by someone else"),
        (&modified, "no valid signature"),
    ] {
        let (ok, out) = verify_signature(file, &publisher_pub);
        assert!(!ok && out.contains(what), "{}: {out}", file.display());
    }
    let (ok, out) = verify_signature(&signed, &mallory_pub);
    assert!(!ok, "{out}");

    let pinned_for_all = format!(
        "[signing]\npublic_keys = [{:?}]\n",
        publisher_pub.display().to_string()
    );
    let cleanup = || {
        Plugin::new("cleanup", "cleanup")
            .grant(&["remediate"])
            .remediation(&["quarantine-file"])
    };
    for (file, what) in [
        (&unsigned, "is not signed"),
        (&resigned, "signed by someone else"),
        (&modified, "no valid signature by a pinned key"),
    ] {
        let error = match world.start(&pinned_for_all, &[cleanup().at(file)]).await {
            Ok(_) => panic!("{} loaded with a publisher key pinned", file.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains("signature refused")
                && error.contains(what)
                && error.contains("`cleanup`"),
            "{}: {error}",
            file.display()
        );
    }
    assert!(
        world.sim.requests().is_empty(),
        "nothing ran, not even a login"
    );

    // A key pinned on the plugin replaces the global one.
    let error = match world
        .start(
            &pinned_for_all,
            &[cleanup().at(&signed).public_keys(&[&mallory_pub])],
        )
        .await
    {
        Ok(_) => panic!("a component signed by another publisher loaded"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("signature refused"), "{error}");

    let service = world
        .start(&pinned_for_all, &[cleanup().at(&signed)])
        .await
        .expect("the validly signed plugin loads");
    let loaded = &service.plugins()[0];
    let (_, inspect) = riposte(&[os("plugin"), os("inspect"), signed.as_os_str()]);
    let signer = loaded.signer.as_ref().expect("a signer").to_string();
    assert!(
        inspect.contains(&signer),
        "inspect names the signer {signer}: {inspect}"
    );
    // A bad key file in the configuration is a mistake with its line and key.
    let garbage = dir.join("garbage.pub");
    std::fs::write(&garbage, "not a key").unwrap();
    let bad = format!(
        "[signing]\npublic_keys = [{:?}]\n",
        garbage.display().to_string()
    );
    let error = format!(
        "{:#}",
        world
            .start(&bad, &[cleanup()])
            .await
            .err()
            .expect("refused")
    );
    assert!(
        error.contains("signing.public_keys[0]") && error.contains("not an Ed25519 public key"),
        "{error}"
    );
}

/// A package (issue 17): `plugin package` embeds the manifest (name and version from the
/// plugin's `describe`, WIT world, digest, the grants it asks for) under the signature;
/// `plugin inspect` shows it with the verified signer; the service loads the package.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_package_shows_what_it_asks_for_and_loads() {
    let world = World::new(2).await;
    let dir = world.dir.path();
    let (publisher, publisher_pub) = keygen(dir, "publisher");
    let package = dir.join("cleanup-0.1.0.wasm");
    let (ok, out) = riposte(&[
        os("plugin"),
        os("package"),
        plugin_path("cleanup").as_os_str(),
        os("--operation"),
        os("remediate"),
        os("--remediation"),
        os("quarantine-file"),
        os("--remediation"),
        os("delete-registry-key"),
        os("--key"),
        publisher.as_os_str(),
        os("-o"),
        package.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let (ok, out) = riposte(&[
        os("plugin"),
        os("inspect"),
        package.as_os_str(),
        os("--public-key"),
        publisher_pub.as_os_str(),
    ]);
    assert!(ok, "{out}");
    let inspected: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    let manifest = &inspected["package"];
    assert_eq!(manifest["name"], "cleanup", "{out}");
    assert_eq!(manifest["wit"], "riposte:plugin/rule@0.2.0");
    assert_eq!(
        manifest["grants"]["operations"],
        serde_json::json!(["remediate"])
    );
    assert_eq!(
        manifest["grants"]["remediation"],
        serde_json::json!(["quarantine-file", "delete-registry-key"])
    );
    assert_eq!(
        manifest["component_sha256"],
        Sha256Digest::of(&std::fs::read(plugin_path("cleanup")).unwrap()).to_hex()
    );
    assert!(
        inspected["signature"]["verified"]["by"].is_string(),
        "{out}"
    );
    assert!(inspected["mismatch"].is_null(), "{out}");

    // An unknown grant name is refused with the right name suggested.
    let (ok, out) = riposte(&[
        os("plugin"),
        os("package"),
        plugin_path("cleanup").as_os_str(),
        os("--operation"),
        os("remediat"),
        os("-o"),
        dir.join("x.wasm").as_os_str(),
    ]);
    assert!(!ok && out.contains("did you mean `remediate`"), "{out}");

    let pinned = format!(
        "[signing]\npublic_keys = [{:?}]\n",
        publisher_pub.display().to_string()
    );
    let service = world
        .start(
            &pinned,
            &[Plugin::new("cleanup", "cleanup")
                .at(&package)
                .grant(&["remediate"])
                .remediation(&["quarantine-file"])],
        )
        .await
        .expect("the signed package loads");
    let loaded = &service.plugins()[0];
    let manifest = loaded.package.as_ref().expect("loaded as a package");
    assert_eq!(
        (manifest.name.as_str(), manifest.version.as_str()),
        ("cleanup", "0.1.0")
    );
    assert!(loaded.signer.is_some());
}
