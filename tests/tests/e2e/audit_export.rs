//! The audit trail in the SIEM (issue 15, section 3) through the real `riposte run`: a keyed
//! trail exported to a collector on loopback, every record once at least with its seq and
//! chain hash, the cursor persisted, and `riposte audit verify --key --against` checking the
//! trail against what the collector stored.

use riposte_e2e::riposte_bin;
use riposte_e2e::service_support::{PluginSpec, ServiceEnv, Setup, riposte_cli, start_sim};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

const LIMIT: Duration = Duration::from_secs(60);

/// A collector storing each newline-framed message as one line, as a SIEM's file would.
fn collector(
    listener: tokio::net::TcpListener,
) -> (Arc<Mutex<Vec<String>>>, tokio::sync::watch::Receiver<usize>) {
    let stored: Arc<Mutex<Vec<String>>> = Arc::default();
    let (count, counted) = tokio::sync::watch::channel(0);
    let out = stored.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (stored, count) = (stored.clone(), count.clone());
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut stored = stored.lock().unwrap();
                    stored.push(line);
                    count.send_replace(stored.len());
                }
            });
        }
    });
    (out, counted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riposte_run_exports_its_keyed_trail_and_verify_checks_it_against_the_export() {
    let sim = start_sim(7, 3).await;
    let env = ServiceEnv::new(
        &sim,
        &Setup::new(vec![PluginSpec::ransomware_containment()]),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stored, mut counted) = collector(listener);

    // Outside the trail's directory (the configuration's, here), as the configuration demands.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.key");
    let key_arg = key.to_str().unwrap();
    let (ok, out, err) = riposte_cli(&["audit", "keygen", key_arg]).await;
    assert!(ok, "keygen: {out}{err}");
    let text = std::fs::read_to_string(&env.config).unwrap();
    let text = text.replacen(
        "[service.audit]\n",
        &format!("[service.audit]\nkey_file = {key:?}\n"),
        1,
    ) + &format!(
        "\n[service.audit.export]\nenabled = true\naddress = \"{address}\"\n\
         framing = \"newline\"\nconfirm_ms = 100\npoll_ms = 100\n\
         \n[service.follow]\nfirst_poll_secs = 0\nmax_poll_interval_secs = 0\n"
    );
    std::fs::write(&env.config, text).unwrap();

    let run = tokio::process::Command::new(riposte_bin())
        .args(["run", "--once", "--config"])
        .arg(&env.config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output();
    let run = tokio::time::timeout(LIMIT, run).await.unwrap().unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "riposte run --once:\n{log}");
    assert!(
        log.contains("exporting the audit trail to the SIEM"),
        "{log}"
    );

    // Every record of the trail reached the collector, keyed, with its seq and hash.
    let trail: Vec<serde_json::Value> = std::fs::read_to_string(&env.audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(trail.len() > 5, "the cycle wrote records");
    assert!(trail.iter().all(|r| r["link"] == "hmac-sha256"));
    let last = trail.len();
    tokio::time::timeout(LIMIT, counted.wait_for(|n| *n >= last))
        .await
        .expect("the collector receives every record")
        .unwrap();
    let messages = stored.lock().unwrap().clone();
    let seqs: BTreeSet<u64> = messages
        .iter()
        .map(|m| {
            riposte_audit::parse_exported(m)
                .expect("an audit record")
                .seq
        })
        .collect();
    assert_eq!(seqs, (1..=last as u64).collect());
    // The run confirmed what it sent before it exited: the cursor is at the end.
    let cursor = riposte_audit::cursor_path(&env.audit);
    assert_eq!(riposte_audit::read_cursor(&cursor).unwrap(), last as u64);

    // The collector's file checks out against the trail, with the key.
    let export = env.dir.path().join("siem.log");
    std::fs::write(&export, messages.join("\n") + "\n").unwrap();
    let verify = [
        "audit",
        "verify",
        env.audit.to_str().unwrap(),
        "--key",
        key_arg,
        "--against",
        export.to_str().unwrap(),
    ];
    let (ok, out, err) = riposte_cli(&verify).await;
    assert!(ok, "verify: {out}{err}");
    assert!(out.contains("verified with the key"), "{out}");
    assert!(
        out.contains(&format!("{last} records match the export")),
        "{out}"
    );

    // The same records as rsyslog's file format stores them (its own header in front) check
    // out too; a file of which no line is an exported record is an error, not a pass.
    let rsyslog = env.dir.path().join("siem-rsyslog.log");
    let lines: Vec<String> = messages
        .iter()
        .map(|m| {
            let payload = &m[m.find('{').expect("a JSON payload")..];
            format!("Dec  2 19:20:00 riposte-host riposte-audit {payload}")
        })
        .collect();
    std::fs::write(&rsyslog, lines.join("\n") + "\n").unwrap();
    let mut against = verify;
    against[6] = rsyslog.to_str().unwrap();
    let (ok, out, err) = riposte_cli(&against).await;
    assert!(ok, "verify against rsyslog's format: {out}{err}");
    assert!(
        out.contains(&format!("{last} records match the export")),
        "{out}"
    );
    let unreadable = env.dir.path().join("not-an-export.log");
    std::fs::write(&unreadable, "one\ntwo\n").unwrap();
    against[6] = unreadable.to_str().unwrap();
    let (ok, out, err) = riposte_cli(&against).await;
    assert!(!ok, "an export of which nothing is read passes: {out}");
    assert!(err.contains("no line of"), "{err}");

    // A record changed on the host: the HMAC and the export both say so.
    let text = std::fs::read_to_string(&env.audit).unwrap();
    let prefix = "{\"seq\":2,\"time_ms\":";
    let at = text.find(prefix).expect("a second record") + prefix.len();
    // One more digit in front of the record's time.
    let changed = format!("{}1{}", &text[..at], &text[at..]);
    std::fs::write(&env.audit, changed).unwrap();
    let (ok, out, err) = riposte_cli(&verify).await;
    assert!(!ok, "a changed record fails verify: {out}");
    assert!(err.contains("seq 2"), "{err}");
}
