//! The keyed chain: HMAC links under a key kept outside the audit directory, and what a
//! rewrite by someone without the key looks like to `verify`.

use super::{entry, lines, no_head, rewrite, tampered};
use hmac::{Hmac, Mac};
use riposte_audit::{
    AuditAdoptKeyArgs, AuditConfig, AuditLog, AuditVerifyArgs, ChainKey, Error, FsyncPolicy,
    GENESIS, Keying, Tamper, VerifyOptions, run_adopt_key, run_verify, verify_with,
};
use riposte_domain::Sha256Digest;
use std::path::{Path, PathBuf};

/// A key file in its own directory (outside the trail's), and the key.
fn key_in(dir: &Path, name: &str) -> (PathBuf, ChainKey) {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let path = keys.join(name);
    ChainKey::generate(&path).unwrap();
    let key = ChainKey::load(&path).unwrap();
    (path, key)
}

/// A keyed trail of `n` records, its key file and key.
fn keyed_log(n: u64) -> (tempfile::TempDir, PathBuf, PathBuf, ChainKey) {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, key) = key_in(dir.path(), "audit.key");
    let path = dir.path().join("audit").join("riposte-audit.jsonl");
    let mut log = AuditLog::open_keyed(&path, FsyncPolicy::Never, Some(key.clone())).unwrap();
    for i in 1..=n {
        log.append(&entry(i)).unwrap();
    }
    (dir, path, key_path, key)
}

fn with_key(key: &ChainKey) -> VerifyOptions {
    VerifyOptions {
        key: Some(key.clone()),
        ..no_head()
    }
}

fn sha256(body: &[u8]) -> Sha256Digest {
    Sha256Digest::of(body)
}

fn hmac_with(key: &[u8]) -> impl Fn(&[u8]) -> Sha256Digest {
    let key = key.to_vec();
    move |body| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(body);
        Sha256Digest(mac.finalize().into_bytes().into())
    }
}

const HASH_FIELD: &str = ",\"hash\":\"";

/// What an attacker with write access but without the key does: from line index `from` on,
/// edits each record's body (`edit`), sets its `link` (or removes it, for `None`), points
/// `prev` at the previous (forged) record and recomputes its hash with `hash`. The result is
/// a consistent chain in every respect but the key.
pub(super) fn forge(
    lines: &[String],
    from: usize,
    link: Option<&str>,
    hash: &dyn Fn(&[u8]) -> Sha256Digest,
    edit: &dyn Fn(usize, String) -> String,
) -> Vec<String> {
    let mut out = lines[..from].to_vec();
    let mut prev = match from {
        0 => GENESIS.to_hex(),
        _ => {
            let last = &lines[from - 1];
            last[last.rfind(HASH_FIELD).unwrap() + HASH_FIELD.len()..][..64].to_owned()
        }
    };
    for (i, line) in lines.iter().enumerate().skip(from) {
        let body = edit(i, line[..line.rfind(HASH_FIELD).unwrap()].to_owned());
        let body = body[..body.rfind(",\"prev\":\"").unwrap()].to_owned();
        let body = body
            .replace(",\"link\":\"hmac-sha256\"", "")
            .replace(",\"link\":\"sha256\"", "");
        let body = match link {
            Some(link) => format!("{body},\"link\":\"{link}\",\"prev\":\"{prev}\"}}"),
            None => format!("{body},\"prev\":\"{prev}\"}}"),
        };
        let h = hash(body.as_bytes()).to_hex();
        out.push(format!("{},\"hash\":\"{h}\"}}", &body[..body.len() - 1]));
        prev = h;
    }
    out
}

/// Changes the third record's Malop, as someone covering their tracks would.
fn edit_third(i: usize, body: String) -> String {
    if i == 2 {
        body.replace("\"malop\":\"11.-0\"", "\"malop\":\"11.-9\"")
    } else {
        body
    }
}

#[test]
fn a_keyed_trail_verifies_with_its_key_and_says_which() {
    let (_dir, path, _, key) = keyed_log(6);
    assert!(lines(&path)[0].contains(",\"link\":\"hmac-sha256\",\"prev\":"));
    let report = verify_with(&path, &with_key(&key)).unwrap();
    assert_eq!(report.records, 6);
    assert_eq!(report.keying, Keying::Verified { from: 1 });
    assert!(
        report.to_string().contains("verified with the key"),
        "{report}"
    );
    // Without the key: the structure only, and the report says so.
    let report = verify_with(&path, &no_head()).unwrap();
    assert_eq!(report.keying, Keying::Unchecked { from: 1 });
    assert!(report.to_string().contains("NOT authenticated"), "{report}");
    // The key never shows, not even in Debug.
    assert_eq!(format!("{key:?}"), "ChainKey([redacted])");
}

#[test]
fn a_consistent_rewrite_without_the_key_is_caught_at_the_first_rewritten_record() {
    let (dir, path, _, key) = keyed_log(6);
    let original = lines(&path);
    let wrong = ChainKey::new(vec![0x5a; 32]).unwrap();
    assert_ne!(key_in(dir.path(), "other.key").1, key, "keys are random");
    // Links recomputed with plain sha256, still claiming to be HMACs; with a wrong key.
    for hash in [
        Box::new(sha256) as Box<dyn Fn(&[u8]) -> Sha256Digest>,
        Box::new(hmac_with(&[0x5a; 32])),
    ] {
        rewrite(
            &path,
            &forge(&original, 2, Some("hmac-sha256"), &*hash, &edit_third),
        );
        // Consistent: without the key, only structure can be checked, and it holds.
        let report = verify_with(&path, &no_head()).unwrap();
        assert_eq!(report.keying, Keying::Unchecked { from: 1 });
        // With the key: the first rewritten record is named.
        let (line, seq, problem) = tampered(verify_with(&path, &with_key(&key)));
        assert_eq!((line, seq, problem), (3, Some(3), Tamper::MacMismatch));
        // A wrong key does not authenticate the genuine records either.
        let (line, _, problem) = tampered(verify_with(&path, &with_key(&wrong)));
        assert_eq!((line, problem), (1, Tamper::MacMismatch));
    }
    // Rewritten as an unkeyed chain from the third record: a downgrade, caught with or
    // without the key.
    rewrite(
        &path,
        &forge(&original, 2, Some("sha256"), &sha256, &edit_third),
    );
    for options in [no_head(), with_key(&key)] {
        let (line, seq, problem) = tampered(verify_with(&path, &options));
        assert_eq!(
            (line, seq, problem),
            (3, Some(3), Tamper::Downgrade { keyed_from: 1 })
        );
    }
    // The whole file rewritten as an unkeyed chain: consistent, so without the key it can
    // only warn; with the key it is refused at the first record.
    rewrite(
        &path,
        &forge(&original, 0, Some("sha256"), &sha256, &edit_third),
    );
    let report = verify_with(&path, &no_head()).unwrap();
    assert_eq!(report.keying, Keying::Unkeyed);
    assert!(report.to_string().contains("WARNING"), "{report}");
    let (line, seq, problem) = tampered(verify_with(&path, &with_key(&key)));
    assert_eq!((line, seq, problem), (1, Some(1), Tamper::NotKeyed));
}

#[test]
fn the_writer_refuses_to_continue_a_keyed_trail_without_its_key() {
    let (dir, path, _, key) = keyed_log(3);
    assert!(matches!(
        AuditLog::open(&path, FsyncPolicy::Never),
        Err(Error::KeyRequired { .. })
    ));
    let wrong = key_in(dir.path(), "wrong.key").1;
    let err = AuditLog::open_keyed(&path, FsyncPolicy::Never, Some(wrong)).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not authenticate under the configured key"),
        "{err}"
    );
    let mut log = AuditLog::open_keyed(&path, FsyncPolicy::Never, Some(key.clone())).unwrap();
    assert_eq!(log.append(&entry(4)).unwrap().seq, 4);
    drop(log);
    assert_eq!(verify_with(&path, &with_key(&key)).unwrap().records, 4);
}

#[test]
fn unkeyed_and_legacy_trails_still_verify_and_can_become_keyed() {
    let (dir, path) = super::log_with(4);
    // A trail written before records said how they are linked (no `link` field).
    let legacy = forge(&lines(&path), 0, None, &sha256, &|_, body| body);
    assert!(!legacy[0].contains("\"link\""));
    rewrite(&path, &legacy);
    std::fs::remove_file(riposte_audit::head_path(&path)).unwrap();
    let report = verify_with(&path, &no_head()).unwrap();
    assert_eq!((report.records, report.keying), (4, Keying::Unkeyed));
    // A key configured later is refused until the operator adopts it for the trail (a
    // restart must not take up a keyed trail rewritten as an unkeyed one); adopting it
    // appends the keyed record that anchors the unkeyed ones.
    let (key_path, key) = key_in(dir.path(), "audit.key");
    let refused = AuditLog::open_keyed(&path, FsyncPolicy::Never, Some(key.clone())).unwrap_err();
    assert!(
        matches!(refused, Error::KeyNotAdopted { records: 4, .. })
            && refused.to_string().contains("riposte audit adopt-key"),
        "{refused}"
    );
    let args = AuditAdoptKeyArgs {
        trail: path.clone(),
        key: key_path.clone(),
    };
    let mut out = Vec::new();
    run_adopt_key(&args, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("4 unkeyed records verified; keyed from seq 5"),
        "{out}"
    );
    let again = run_adopt_key(&args, &mut Vec::new()).unwrap_err();
    assert!(again.to_string().contains("keyed already"), "{again}");
    let mut log = AuditLog::open_keyed(&path, FsyncPolicy::Never, Some(key.clone())).unwrap();
    log.append(&entry(6)).unwrap();
    drop(log);
    let report = verify_with(&path, &with_key(&key)).unwrap();
    assert_eq!(report.keying, Keying::Verified { from: 5 });
    assert!(
        report.to_string().contains("records 1..4 unkeyed"),
        "{report}"
    );
    // The unkeyed records are anchored by the first keyed one: rewriting them (a consistent
    // unkeyed chain) breaks its link.
    let original = lines(&path);
    let forged = forge(&original, 0, Some("sha256"), &sha256, &|i, body| {
        if i == 1 {
            body.replace("inv-2", "inv-X")
        } else {
            body
        }
    });
    let mut tampered = forged[..4].to_vec();
    tampered.extend_from_slice(&original[4..]);
    rewrite(&path, &tampered);
    assert!(verify_with(&path, &with_key(&key)).is_err());
}

/// A keyed trail rewritten whole without the key, as an unkeyed chain, is not taken up by a
/// restart of the writer (which would go on keyed and make it look adopted).
#[test]
fn a_keyed_trail_rewritten_as_an_unkeyed_one_is_refused_on_open() {
    let (_dir, path, _, key) = keyed_log(5);
    let rewritten = forge(&lines(&path), 0, Some("sha256"), &sha256, &|_, body| body);
    rewrite(&path, &rewritten);
    std::fs::remove_file(riposte_audit::head_path(&path)).unwrap();
    let err = AuditLog::open_keyed(&path, FsyncPolicy::Never, Some(key)).unwrap_err();
    assert!(
        matches!(err, Error::KeyNotAdopted { records: 5, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("rewritten without the key"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_key_file_others_may_read_is_refused_and_its_bytes_never_shown() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = key_in(dir.path(), "audit.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "keygen makes an owner-only file");
    // keygen never overwrites a key.
    assert!(ChainKey::generate(&path).is_err());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = ChainKey::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    let short = dir.path().join("keys").join("short");
    std::fs::write(&short, "hunter2").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = ChainKey::load(&short).unwrap_err().to_string();
    assert!(
        err.contains("32 to 1024 bytes") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn the_key_file_must_live_outside_the_audit_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut config: AuditConfig = toml::from_str(
        "path = \"audit/trail.jsonl\"\nkey_file = \"audit/trail.key\"\n[export]\nenabled = false\n",
    )
    .unwrap();
    let findings = config.resolve(dir.path());
    let text = format!("{findings:?}");
    assert!(
        text.contains("key_file") && text.contains("audit trail's directory"),
        "{text}"
    );
    // Below the trail's directory is inside it too, also through a symbolic link.
    std::fs::create_dir_all(dir.path().join("audit/keys")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("audit"), dir.path().join("elsewhere")).unwrap();
    for inside in [
        "audit/keys/trail.key",
        "audit/new/trail.key",
        "elsewhere/trail.key",
    ] {
        let mut config: AuditConfig = toml::from_str(&format!(
            "path = \"audit/trail.jsonl\"\nkey_file = \"{inside}\"\n"
        ))
        .unwrap();
        let text = format!("{:?}", config.resolve(dir.path()));
        assert!(text.contains("or below it"), "{inside}: {text}");
    }
    // A configuration read from the working directory (`--config riposte.toml`): the trail
    // beside it, the key elsewhere.
    let mut config: AuditConfig = toml::from_str(&format!(
        "key_file = {:?}\n",
        dir.path().join("k/trail.key")
    ))
    .unwrap();
    assert!(config.resolve(Path::new("")).is_empty());
    let mut config: AuditConfig =
        toml::from_str("path = \"audit/trail.jsonl\"\nkey_file = \"keys/trail.key\"\n").unwrap();
    assert!(config.resolve(dir.path()).is_empty());
    assert_eq!(config.key_file, Some(dir.path().join("keys/trail.key")));
}

#[test]
fn verify_on_the_command_line_takes_the_key() {
    let (_dir, path, key_path, _) = keyed_log(3);
    let args = |key: Option<&Path>| AuditVerifyArgs {
        files: vec![path.clone()],
        expect_seq: None,
        expect_hash: None,
        no_head_file: false,
        key: key.map(Path::to_path_buf),
        against: None,
        host: None,
    };
    let mut out = Vec::new();
    run_verify(&args(Some(&key_path)), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("keyed chain (hmac-sha256) verified"),
        "{text}"
    );
    let mut out = Vec::new();
    run_verify(&args(None), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("NOT authenticated"), "{text}");
}
