//! Loading the operator's TOML: defaults, the documented example, and mistakes named by file,
//! line and key.

use riposte_audit::FsyncPolicy;
use riposte_config::{Error, Problem};
use riposte_domain::{ActionKind, Operation, PluginName, RemediationKind, Sha256Digest};
use riposte_policy::{ActionSelector, Mode};
use riposte_runtime::Limits;
use riposte_service::{OperatorConfig, PluginFileError};
use riposte_store::settings::{Backend, DatabaseConfig, PasswordSource};
use std::path::{Path, PathBuf};
use std::time::Duration;

const PIN: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("riposte.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Loads `text` from a temp file and returns its problems (it must fail).
fn problems(text: &str) -> (PathBuf, Vec<Problem>) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), text);
    match OperatorConfig::load(&path) {
        Err(Error::Invalid { problems, .. }) => (path, problems),
        Err(other) => panic!("expected validation problems, got {other}"),
        Ok(_) => panic!("expected validation problems, the config loaded"),
    }
}

fn plugin(extra: &str) -> String {
    format!("[[plugins]]\nname = \"p\"\npath = \"p.wasm\"\nsha256 = \"{PIN}\"\n{extra}")
}

#[test]
fn the_documented_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/examples/riposte.toml");
    let config = OperatorConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let base = path.parent().unwrap();
    assert_eq!(config.service.poll_interval_secs, 30);
    assert_eq!(
        config.service.database,
        DatabaseConfig::sqlite(base.join("riposte.db"))
    );
    assert_eq!(config.service.audit.fsync, FsyncPolicy::EveryRecord);
    assert_eq!(
        config.service.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let server = config.service.server.as_ref().unwrap();
    assert_eq!(server.base_url, "https://cybereason.example.com:8443");
    assert_eq!(config.service.follow.first_poll_secs, 5);
    assert_eq!(config.service.follow.max_polls, 40);
    assert!(
        !config.service.syslog.enabled,
        "the listener is off in the example"
    );
    assert!(
        !config.service.audit.export.enabled,
        "the SIEM export is off in the example"
    );
    assert_eq!(config.service.audit.key_file, None);
    assert_eq!(
        config.service.audit.export.ca_file,
        Some(base.join("siem-ca.pem"))
    );
    assert_eq!(config.policy.protected.machine_name_globs.len(), 3);
    assert_eq!(
        config.policy.global_budgets[0].action,
        ActionSelector::Kind(ActionKind::Isolate)
    );
    assert!(
        config
            .policy
            .approvals
            .required
            .contains(&ActionKind::Isolate)
    );
    assert_eq!(config.plugins.len(), 2);

    let p = &config.plugins[0];
    assert_eq!(p.name, PluginName::new("ransomware-containment"));
    assert_eq!(p.path, base.join("plugins/ransomware_containment.wasm"));
    assert_eq!(p.rules.mode, Mode::Enforce);
    assert!(p.rules.grants.allows_operation(Operation::Isolate));
    assert!(
        p.rules
            .grants
            .remediation
            .contains(&RemediationKind::KillProcess)
    );
    assert!(p.rules.grants.allows_kind(ActionKind::QuarantineFile));
    assert!(!p.rules.grants.allows_kind(ActionKind::DeleteRegistryKey));
    assert_eq!(p.rules.budgets[1].action, ActionSelector::Remediate);
    assert_eq!(p.rules.cooldown_secs, 600);
    assert_eq!(
        p.values.get("min_priority").map(String::as_str),
        Some("HIGH")
    );

    // The example's `[plugins.limits]` says "Defaults shown": it must show the runtime's.
    assert_eq!(p.limits, Limits::default());

    let q = &config.plugins[1];
    assert_eq!(q.rules.mode, Mode::Shadow);
    assert!(q.rules.enforces(ActionKind::AddComment));
    assert!(!q.rules.enforces(ActionKind::Blacklist));
    // G11 keys of the example.
    assert_eq!(p.rules.min_interval_secs, 300);
    assert_eq!(p.rules.quotas.queries_per_invocation, 10);
    assert!(p.rules.grants.wider_scope.is_empty());
    assert!(!q.rules.grants.whitelist);
    assert!(q.rules.grants.allows_kind(ActionKind::Blacklist));
    assert!(!q.rules.grants.allows_kind(ActionKind::Whitelist));

    // The publisher key pinned for all plugins applies to both.
    let key = base.join("keys/publisher.pub");
    assert_eq!(config.signing.public_keys, vec![key.clone()]);
    assert_eq!(p.public_keys, vec![key.clone()]);
    assert_eq!(q.public_keys, vec![key]);
}

#[test]
fn the_database_is_sqlite_by_default_or_postgres_with_its_password_outside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = OperatorConfig::load(write(dir.path(), &plugin(""))).unwrap();
    assert_eq!(
        defaults.service.database,
        DatabaseConfig::sqlite(dir.path().join("riposte.db"))
    );
    assert_eq!(
        defaults.artifact_dir(),
        dir.path().join("riposte.artifacts")
    );
    // The older key: SQLite at that path.
    let older = OperatorConfig::load(write(dir.path(), "[service]\ndatabase = \"state/r.db\"\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        older.service.database,
        DatabaseConfig::sqlite(dir.path().join("state/r.db"))
    );
    assert_eq!(older.artifact_dir(), dir.path().join("state/r.artifacts"));

    // PostgreSQL, the password in a private credentials file.
    let secret = "correct horse battery staple";
    let credentials = dir.path().join("database-credentials");
    std::fs::write(&credentials, format!("password = {secret}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = "[service]\npoll_interval_secs = 10\n\n[service.database]\nbackend = \"postgres\"\n\
                url = \"postgres://riposte@db.corp:5432/riposte\"\ncredentials_file = \"database-credentials\"\n\
                lease_secs = 20\nheartbeat_secs = 4\n";
    let config = OperatorConfig::load(write(dir.path(), text)).unwrap_or_else(|e| panic!("{e}"));
    let Backend::Postgres(postgres) = &config.service.database.backend else {
        panic!("{:?}", config.service.database)
    };
    assert_eq!(postgres.shown(), "postgres://riposte@db.corp:5432/riposte");
    assert_eq!(postgres.password().expose(), secret);
    assert_eq!(
        postgres.password_source(),
        &PasswordSource::CredentialsFile(credentials.clone())
    );
    assert_eq!(postgres.lease(), Duration::from_secs(20));
    assert_eq!(postgres.heartbeat(), Duration::from_secs(4));
    assert_eq!(config.artifact_dir(), dir.path().join("riposte.artifacts"));
    let shown = format!("{config:?} {}", serde_json::to_string(&config).unwrap());
    assert!(!shown.contains("horse"), "{shown}");

    // Readable by others: refused, at the key, with the fix.
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
    let Err(Error::Invalid {
        problems: found, ..
    }) = OperatorConfig::load(write(dir.path(), text))
    else {
        panic!("a credentials file others may read must be refused")
    };
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].line, found[0].key.as_str()),
        (7, "service.database.credentials_file")
    );
    assert!(
        found[0].message.contains("chmod 600"),
        "{}",
        found[0].message
    );
}

#[test]
fn database_mistakes_are_named_by_key_and_never_repeat_the_password() {
    let (path, found) = problems(
        "[service.database]\nbackend = \"postgres\"\nurl = \"postgres://riposte:hunter2@db/riposte\"\n\
         password_env = \"RIPOSTE_E2E_SURELY_UNSET_PASSWORD\"\nheartbeat_secs = 20\n",
    );
    let keys: Vec<(usize, &str)> = found.iter().map(|p| (p.line, p.key.as_str())).collect();
    assert_eq!(
        keys,
        [
            (3, "service.database.url"),
            (4, "service.database.password_env"),
            (5, "service.database.heartbeat_secs"),
        ],
        "{found:#?}"
    );
    assert!(
        found[0]
            .message
            .contains("write `postgres://riposte@db/riposte`"),
        "{}",
        found[0].message
    );
    assert!(
        found[1]
            .message
            .contains("RIPOSTE_E2E_SURELY_UNSET_PASSWORD is not set"),
        "{}",
        found[1].message
    );
    let err = OperatorConfig::load(&path).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");

    let (_, found) = problems(
        "[service.database]\nbackend = \"postgres\"\nurl = \"postgres://riposte@db/riposte\"\npassword = \"hunter2\"\n",
    );
    let password = found
        .iter()
        .find(|p| p.key == "service.database.password")
        .unwrap_or_else(|| panic!("{found:#?}"));
    assert_eq!(password.line, 4);
    assert!(
        password.message.contains("password_env"),
        "{}",
        password.message
    );
    assert!(!format!("{found:?}").contains("hunter2"), "{found:#?}");

    let (_, found) = problems("[service.database]\nbackend = \"mysql\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "service.database.backend");
    let (_, found) = problems("[service.database]\npath = \"r.db\"\nlease_secs = 30\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].line, found[0].key.as_str()),
        (3, "service.database.lease_secs")
    );
    let (_, found) = problems("[service.database]\nbakend = \"sqlite\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].key, "service.database.bakend");

    // The older key and the table at once: TOML itself refuses the second `database`.
    let (_, found) =
        problems("[service]\ndatabase = \"a.db\"\n\n[service.database]\npath = \"b.db\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].line >= 4, "{found:?}");
    assert!(
        found[0].message.contains("duplicate"),
        "{}",
        found[0].message
    );
}

#[test]
fn scope_quota_and_interval_keys_parse_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &plugin(""));
    let p = OperatorConfig::load(&path).unwrap().plugins.remove(0);
    assert_eq!(
        p.rules.min_interval_secs,
        riposte_policy::settings::DEFAULT_MIN_INTERVAL_SECS
    );
    assert_eq!(p.rules.quotas, riposte_policy::Quotas::default());
    assert!(!p.rules.grants.whitelist && p.rules.grants.wider_scope.is_empty());
    assert_eq!(
        p.rules.interval_secs(Some(1)),
        Some(60),
        "the operator caps the interval"
    );
    assert_eq!(p.rules.interval_secs(Some(3600)), Some(3600));
    assert_eq!(p.rules.interval_secs(None), None);

    let path = write(
        dir.path(),
        &plugin(
            r#"min_interval_secs = 5
[plugins.grants]
operations = ["isolate", "set-reputation"]
whitelist = true
wider_scope = ["isolate", "whitelist"]
[plugins.quotas]
queries_per_invocation = 3
queries_per_minute = 4
kv_writes_per_invocation = 5
kv_writes_per_minute = 6
calls_per_invocation = 7
"#,
        ),
    );
    let p = OperatorConfig::load(&path).unwrap().plugins.remove(0);
    assert_eq!(p.rules.interval_secs(Some(1)), Some(5));
    assert!(p.rules.grants.allows_kind(ActionKind::Whitelist));
    assert_eq!(
        p.rules.grants.wider_scope,
        [ActionKind::Isolate, ActionKind::Whitelist]
            .into_iter()
            .collect()
    );
    assert_eq!(
        (
            p.rules.quotas.queries_per_invocation,
            p.rules.quotas.queries_per_minute
        ),
        (3, 4)
    );
    assert_eq!(
        (
            p.rules.quotas.kv_writes_per_invocation,
            p.rules.quotas.kv_writes_per_minute,
            p.rules.quotas.calls_per_invocation
        ),
        (5, 6, 7)
    );
}

#[test]
fn scope_and_whitelist_grants_must_name_granted_kinds() {
    let (_, found) = problems(&plugin(
        r#"min_interval_secs = 0
[plugins.grants]
operations = ["isolate"]
whitelist = true
wider_scope = ["kill-process", "isolat"]
"#,
    ));
    let messages: Vec<String> = found
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect();
    let has = |key: &str, text: &str| {
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with(key) && m.contains(text)),
            "{key} / {text}: {messages:#?}"
        )
    };
    has(
        "plugins[0].grants.whitelist",
        "`set-reputation` is not in grants.operations",
    );
    has(
        "plugins[0].grants.wider_scope[0]",
        "`kill-process` is given a wider scope but is not granted",
    );
    has(
        "plugins[0].grants.wider_scope[1]",
        "did you mean `isolate`?",
    );
    has("plugins[0].min_interval_secs", "at least 1 second");
}

#[test]
fn the_split_set_reputation_kind_is_named_with_its_fix() {
    let text = format!(
        "{}\n{}",
        r#"[approvals]
required = ["set-reputation"]

[[global_budgets]]
action = "set-reputation"
max = 1
window_secs = 60
"#,
        plugin(
            r#"mode = "shadow"
promote = ["set-reputation"]
[plugins.grants]
operations = ["set-reputation"]
"#
        )
    );
    let (_, found) = problems(&text);
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "approvals.required[0]",
            "global_budgets[0].action",
            "plugins[0].promote[0]"
        ]
    );
    for problem in &found {
        assert!(
            problem
                .message
                .contains("split into `blacklist` and `whitelist`")
                && problem.message.contains("write `blacklist`"),
            "{problem}"
        );
    }
    // The operation keeps its name, and still grants blacklisting.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &plugin("[plugins.grants]\noperations = [\"set-reputation\"]\n"),
    );
    let p = OperatorConfig::load(&path).unwrap().plugins.remove(0);
    assert!(p.rules.grants.allows_kind(ActionKind::Blacklist));
    assert!(!p.rules.grants.allows_kind(ActionKind::Whitelist));
}

#[test]
fn publisher_keys_are_pinned_globally_or_per_plugin_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let example_key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/examples/keys/publisher.pub");
    std::fs::copy(&example_key, dir.path().join("global.pub")).unwrap();
    std::fs::copy(&example_key, dir.path().join("own.pub")).unwrap();
    let text = format!(
        "[signing]\npublic_keys = [\"global.pub\"]\n\n{}\n[[plugins]]\nname = \"q\"\npath = \"q.wasm\"\nsha256 = \"{PIN}\"\npublic_keys = [\"own.pub\"]\n\n[[plugins]]\nname = \"r\"\npath = \"r.wasm\"\nsha256 = \"{PIN}\"\npublic_keys = []\n",
        plugin("")
    );
    let config = OperatorConfig::load(write(dir.path(), &text)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.plugins[0].public_keys,
        vec![dir.path().join("global.pub")]
    );
    assert_eq!(
        config.plugins[1].public_keys,
        vec![dir.path().join("own.pub")]
    );
    assert!(
        config.plugins[2].public_keys.is_empty(),
        "an empty list opts the plugin out"
    );
    // Without [signing], nothing is pinned: the sha256 pin alone.
    let bare = OperatorConfig::load(write(dir.path(), &plugin(""))).unwrap();
    assert!(bare.plugins[0].public_keys.is_empty());

    let (_, found) = problems(&format!(
        "[signing]\npublic_keys = [\"missing.pub\"]\n\n{}public_keys = [\"{}\"]\n",
        plugin(""),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../host/examples/riposte.toml")
            .display()
    ));
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        (found[0].key.as_str(), found[0].line),
        ("signing.public_keys[0]", 2)
    );
    assert!(
        found[0].message.contains("missing.pub"),
        "{}",
        found[0].message
    );
    assert_eq!(found[1].key, "plugins[0].public_keys[0]");
    assert!(
        found[1].message.contains("not an Ed25519 public key"),
        "{}",
        found[1].message
    );
}

#[test]
fn defaults_apply_and_relative_paths_resolve_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &plugin(""));
    let config = OperatorConfig::load(&path).unwrap();
    assert_eq!(config.plugins[0].path, dir.path().join("p.wasm"));
    assert_eq!(
        config.plugins[0].rules.mode,
        Mode::Shadow,
        "shadow is the safe default"
    );
    assert_eq!(
        config.service.audit.path,
        dir.path().join("riposte-audit.jsonl")
    );
    assert!(config.service.server.is_none());
    assert!(config.policy.global_budgets.is_empty());
}

/// The pool's resident memory per slot is the runtime's default unless `[service]` sets it,
/// and the engine is built with what the file says.
#[test]
fn keep_resident_bytes_defaults_to_the_runtimes_and_reaches_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let config = OperatorConfig::load(write(dir.path(), &plugin(""))).unwrap();
    let default = riposte_runtime::RuntimeConfig::default().keep_resident_bytes;
    assert_eq!(default, 1 << 20);
    assert_eq!(config.service.keep_resident_bytes, default);
    assert_eq!(
        riposte_service::runtime_config(&config).keep_resident_bytes,
        default
    );

    let text = format!("[service]\nkeep_resident_bytes = 0\n\n{}", plugin(""));
    let config = OperatorConfig::load(write(dir.path(), &text)).unwrap();
    assert_eq!(
        riposte_service::runtime_config(&config).keep_resident_bytes,
        0,
        "0 hands every page back"
    );
}

#[test]
fn plugin_limits_are_the_runtimes_with_its_defaults_and_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &plugin("[plugins.limits]\nfuel = 123\nwall_clock_ms = 2500\n"),
    );
    let config = OperatorConfig::load(&path).unwrap();
    assert_eq!(
        config.plugins[0].limits,
        Limits {
            fuel: 123,
            wall_clock: Duration::from_millis(2500),
            ..Limits::default()
        }
    );
    let path = write(dir.path(), &plugin(""));
    let config = OperatorConfig::load(&path).unwrap();
    assert_eq!(config.plugins[0].limits, Limits::default());

    let (path, found) = problems(&plugin(
        "[plugins.limits]\nfuel = 0\nmemory_bytes = 1000\nstack_bytes = 4096\n",
    ));
    let found: Vec<_> = found
        .iter()
        .map(|p| (p.file.clone(), p.line, p.key.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                path.clone(),
                6,
                "plugins[0].limits.fuel",
                "0 is too small; the minimum is 1"
            ),
            (
                path,
                7,
                "plugins[0].limits.memory_bytes",
                "1000 is too small; the minimum is 65536"
            ),
        ]
    );

    let (_, unknown) = problems(&plugin("[plugins.limits]\nfuel_max = 1\n"));
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(
        (unknown[0].line, unknown[0].key.as_str()),
        (6, "plugins[0].limits.fuel_max")
    );
    assert!(
        unknown[0].message.contains("unknown field `fuel_max`"),
        "{}",
        unknown[0].message
    );
}

#[test]
fn an_unknown_key_is_named_with_file_line_and_key() {
    let (path, problems) = problems(&plugin(
        "[plugins.grants]\noperations = []\noperationz = []\n",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert_eq!(p.file, path);
    assert_eq!(p.line, 7);
    assert_eq!(p.key, "plugins[0].grants.operationz");
    assert!(
        p.message.contains("unknown field `operationz`"),
        "{}",
        p.message
    );
    let text = p.to_string();
    assert!(
        text.starts_with(&format!(
            "{}:7: plugins[0].grants.operationz: ",
            path.display()
        )),
        "{text}"
    );
}

#[test]
fn a_secret_in_the_config_is_refused_with_a_hint() {
    let (_, problems) = problems(
        "[service.server]\nbase_url = \"https://x\"\ncredentials_file = \"c\"\npassword = \"hunter2\"\n",
    );
    assert_eq!(problems[0].line, 4);
    assert_eq!(problems[0].key, "service.server.password");
    assert!(
        problems[0].message.contains("credentials_file"),
        "{}",
        problems[0].message
    );
}

#[test]
fn the_server_takes_a_ca_file_or_a_pinned_certificate_and_credentials_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    let pin = "AB:".repeat(31) + "AB";
    let path = write(
        dir.path(),
        "[service.server]\nbase_url = \"https://edr.corp:8443\"\nca_file = \"ca.pem\"\n\n\
         [service.follow]\nfirst_poll_secs = 2\nmax_poll_interval_secs = 30\nmax_polls = 10\n",
    );
    let config = OperatorConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let server = config.service.server.unwrap();
    assert_eq!(server.ca_file, Some(dir.path().join("ca.pem")));
    assert_eq!(server.credentials_file, None, "the environment's then");
    assert_eq!(
        (
            config.service.follow.first_poll_secs,
            config.service.follow.max_polls
        ),
        (2, 10)
    );
    let path = write(
        dir.path(),
        &format!(
            "[service.server]\nbase_url = \"https://edr.corp\"\npinned_certificate_sha256 = \"{pin}\"\n"
        ),
    );
    let server = OperatorConfig::load(&path).unwrap().service.server.unwrap();
    assert_eq!(server.pinned_certificate.unwrap().to_hex(), "ab".repeat(32));
}

#[test]
fn tls_and_follow_mistakes_are_named() {
    let (_, problems) = problems(
        "[service.server]\nbase_url = \"https://x\"\nca_file = \"missing.pem\"\n\
         pinned_certificate_sha256 = \"AB:CD\"\n\n[service.follow]\nmax_polls = 0\n\
         first_poll_secs = 10\nmax_poll_interval_secs = 5\n",
    );
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "service.server.ca_file",
        "service.server.pinned_certificate_sha256",
        "service.follow.max_polls",
        "service.follow.max_poll_interval_secs",
    ] {
        assert!(keys.contains(&key), "{key} in {problems:?}");
    }
    let ca = problems
        .iter()
        .find(|p| p.key == "service.server.ca_file")
        .unwrap();
    assert!(ca.message.contains("missing.pem"), "{}", ca.message);
    let pin = problems
        .iter()
        .find(|p| {
            p.key == "service.server.pinned_certificate_sha256" && p.message.contains("AB:CD")
        })
        .expect("the fingerprint is named");
    assert!(pin.message.contains("openssl"), "{}", pin.message);
}

#[test]
fn a_bad_type_is_named() {
    let (_, problems) = problems("[service]\npoll_interval_secs = \"soon\"\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, 2);
    assert_eq!(problems[0].key, "service.poll_interval_secs");
    assert!(
        problems[0].message.contains("invalid type"),
        "{}",
        problems[0].message
    );
}

#[test]
fn throughput_keys_parse_and_bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[service]\nmax_detail_fetches = 16\n[service.audit]\nfsync = \"batch\"\n{}",
        plugin("")
    );
    let config = OperatorConfig::load(write(dir.path(), &text)).unwrap();
    assert_eq!(config.service.max_detail_fetches, 16);
    assert_eq!(config.service.audit.fsync, FsyncPolicy::Batch);
    let defaults = OperatorConfig::load(write(dir.path(), &plugin(""))).unwrap();
    assert_eq!(
        defaults.service.max_detail_fetches,
        riposte_service::config::DEFAULT_MAX_DETAIL_FETCHES
    );

    let (_, zero) = problems("[service]\nmax_detail_fetches = 0\n");
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert_eq!(zero[0].key, "service.max_detail_fetches");
    assert_eq!(zero[0].message, "must be at least 1");
    let (_, text) = problems("[service]\nmax_detail_fetches = \"many\"\n");
    assert_eq!(text.len(), 1, "{text:?}");
    assert_eq!(
        (text[0].line, text[0].key.as_str()),
        (2, "service.max_detail_fetches")
    );
    let (_, fsync) = problems("[service.audit]\nfsync = \"batched\"\n");
    assert_eq!(fsync.len(), 1, "{fsync:?}");
    assert_eq!(fsync[0].key, "service.audit.fsync");
    assert!(
        fsync[0].message.contains("\"batch\""),
        "the message lists the policies: {}",
        fsync[0].message
    );
}

#[test]
fn a_bad_pin_is_named() {
    let text = "[[plugins]]\nname = \"p\"\npath = \"p.wasm\"\nsha256 = \"abc123\"\n";
    let (_, problems) = problems(text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, 4);
    assert_eq!(problems[0].key, "plugins[0].sha256");
    assert!(
        problems[0].message.contains("64 hex digits"),
        "{}",
        problems[0].message
    );
}

#[test]
fn an_unknown_operation_is_named_with_a_suggestion() {
    let (path, problems) = problems(&plugin(
        "[plugins.grants]\noperations = [\"get-malop\",\n  \"isolat\"]\n",
    ));
    assert_eq!(problems.len(), 1, "{problems:?}");
    let p = &problems[0];
    assert_eq!(p.line, 7);
    assert_eq!(p.key, "plugins[0].grants.operations[1]");
    assert_eq!(
        p.to_string(),
        format!(
            "{}:7: plugins[0].grants.operations[1]: unknown operation `isolat`; did you mean `isolate`?; expected one of list-malops, get-malop, remediate, remediation-status, isolate, unisolate, set-reputation, remove-reputation, set-status, add-comment",
            path.display()
        )
    );
}

#[test]
fn a_bad_glob_is_named() {
    let (_, problems) = problems("[protected]\nmachine_name_globs = [\"dc-*\", \"web-[\"]\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, 2);
    assert_eq!(problems[0].key, "protected.machine_name_globs[1]");
    assert!(
        problems[0].message.contains("bad glob `web-[`"),
        "{}",
        problems[0].message
    );
}

#[test]
fn every_mistake_is_reported_not_just_the_first() {
    let text = format!(
        "[service]\nmax_concurrency = 0\nmax_detail_fetches = 257\nkeep_resident_bytes = 67108865\n\n[[global_budgets]]\naction = \"isolation\"\nmax = 1\nwindow_secs = 0\n\n{}\n[[plugins]]\nname = \"p\"\npath = \"q.wasm\"\nsha256 = \"{PIN}\"\nmode = \"enforced\"\n",
        plugin("promote = [\"isolate\"]\n[plugins.grants]\nremediation = [\"kill-proces\"]\n")
    );
    let (path, problems) = problems(&text);
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "service.max_concurrency",
            "service.max_detail_fetches",
            "service.keep_resident_bytes",
            "global_budgets[0].action",
            "global_budgets[0].window_secs",
            "plugins[0].promote[0]",
            "plugins[0].grants.remediation",
            "plugins[0].grants.remediation[0]",
            "plugins[1].name",
            "plugins[1].mode",
        ],
        "{problems:#?}"
    );
    let err = OperatorConfig::parse(&text, &path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("10 mistakes in {}:", path.display())),
        "{err}"
    );
    assert!(
        err.contains("max_detail_fetches: must be at most 256, not 257"),
        "{err}"
    );
    assert!(
        err.contains("keep_resident_bytes: must be at most 67108864 (64 MiB), not 67108865"),
        "{err}"
    );
    assert!(
        err.contains("duplicate plugin name `p` (also plugins[0])"),
        "{err}"
    );
}

#[test]
fn granting_remediate_requires_kinds() {
    let (_, problems) = problems(&plugin("[plugins.grants]\noperations = [\"remediate\"]\n"));
    assert_eq!(problems[0].key, "plugins[0].grants.operations");
    assert!(problems[0].message.contains("grants.remediation"));
}

#[test]
fn a_syntax_error_names_the_line() {
    let (_, problems) = problems("[service]\npoll_interval_secs = = 3\n");
    assert_eq!(problems[0].line, 2);
    assert!(
        problems[0].message.starts_with("TOML syntax"),
        "{}",
        problems[0].message
    );
}

#[test]
fn an_unknown_section_is_named() {
    let (_, problems) = problems("[servise]\n");
    assert_eq!(problems[0].key, "servise");
    assert!(problems[0].message.contains("unknown section"));
}

#[test]
fn the_pin_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let component = b"\0asm component bytes";
    std::fs::write(dir.path().join("p.wasm"), component).unwrap();
    let good = Sha256Digest::of(component).to_hex();
    let text = format!("[[plugins]]\nname = \"p\"\npath = \"p.wasm\"\nsha256 = \"{good}\"\n");
    let config = OperatorConfig::load(write(dir.path(), &text)).unwrap();
    let p = &config.plugins[0];
    assert_eq!(p.read_verified().unwrap(), component);

    let err = p.verify_pin(b"tampered").unwrap_err();
    let PluginFileError::PinMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*expected, Sha256Digest::of(component));
    assert_eq!(*actual, Sha256Digest::of(b"tampered"));
    let text = err.to_string();
    assert!(
        text.contains(&good) && text.contains(&actual.to_hex()),
        "{text}"
    );
}

#[test]
fn a_missing_file_says_which() {
    let err = OperatorConfig::load("/nonexistent/riposte.toml").unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/riposte.toml"),
        "{err}"
    );
}

#[test]
fn the_syslog_listener_is_off_by_default_read_from_service_syslog_and_its_mistakes_named() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = OperatorConfig::load(write(dir.path(), &plugin(""))).unwrap();
    assert!(!defaults.service.syslog.enabled);
    assert!(!defaults.service.syslog.has_transport());

    let text = format!(
        "[service.syslog]\nenabled = true\ntcp_listen = \"127.0.0.1:5514\"\n\
         allowed_sources = [\"192.0.2.7\", \"10.0.0.0/8\"]\ncoalesce_interval_ms = 250\n\
         [service.syslog.tls]\nlisten = \"127.0.0.1:6514\"\ncert = \"tls/cert.pem\"\n\
         key = \"tls/key.pem\"\n{}",
        plugin("")
    );
    let path = write(dir.path(), &text);
    let config = OperatorConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let syslog = &config.service.syslog;
    assert!(syslog.enabled);
    assert_eq!(syslog.tcp_listen, Some("127.0.0.1:5514".parse().unwrap()));
    assert_eq!(syslog.allowed_sources.len(), 2);
    assert_eq!(syslog.coalesce_interval_ms, 250);
    let tls = syslog.tls.as_ref().unwrap();
    assert_eq!(tls.cert, dir.path().join("tls/cert.pem"), "resolved");
    assert_eq!(syslog.max_message_bytes, 8192, "the syslog crate's default");

    // The syslog crate's checks, placed at file, line and key.
    let (file, range) = problems(
        "[service]\npoll_interval_secs = 30\n[service.syslog]\nenabled = true\n\
         tcp_listen = \"127.0.0.1:5514\"\nmax_message_bytes = 10\n",
    );
    assert_eq!(range.len(), 1, "{range:?}");
    assert_eq!(range[0].key, "service.syslog.max_message_bytes");
    assert_eq!(range[0].file, file);
    assert_eq!(range[0].line, 6);
    assert!(
        range[0].message.contains("out of range"),
        "{}",
        range[0].message
    );
    let (_, nowhere) = problems("[service.syslog]\nenabled = true\n");
    assert_eq!(nowhere.len(), 1, "{nowhere:?}");
    assert_eq!(nowhere[0].key, "service.syslog");
    assert!(nowhere[0].message.contains("tcp_listen"), "{nowhere:?}");
    let (_, unknown) = problems("[service.syslog]\nenabeld = true\n");
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert!(unknown[0].key.starts_with("service.syslog"), "{unknown:?}");
    let (_, source) = problems("[service.syslog]\nallowed_sources = [\"cybereason\"]\n");
    assert_eq!(source.len(), 1, "{source:?}");
    assert!(
        source[0].key.starts_with("service.syslog.allowed_sources"),
        "{source:?}"
    );
}

#[test]
fn the_audit_key_and_the_siem_export_are_read_from_service_audit_and_their_mistakes_named() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = OperatorConfig::load(write(dir.path(), &plugin(""))).unwrap();
    assert!(!defaults.service.audit.export.enabled, "off by default");
    assert_eq!(defaults.service.audit.key_file, None);

    let text = format!(
        "[service.audit]\npath = \"audit/trail.jsonl\"\nkey_file = \"keys/audit.key\"\n\
         [service.audit.export]\nenabled = true\naddress = \"siem.example.com:6514\"\n\
         transport = \"tls\"\nca_file = \"siem-ca.pem\"\nformat = \"cef\"\n{}",
        plugin("")
    );
    let config = OperatorConfig::load(write(dir.path(), &text)).unwrap();
    let audit = &config.service.audit;
    assert_eq!(audit.key_file, Some(dir.path().join("keys/audit.key")));
    assert!(audit.export.enabled);
    assert_eq!(audit.export.ca_file, Some(dir.path().join("siem-ca.pem")));
    assert_eq!(audit.export.format, riposte_audit::ExportFormat::Cef);

    // The audit crate's checks, placed at file, line and key.
    let (file, found) = problems(
        "[service.audit]\npath = \"audit/trail.jsonl\"\nkey_file = \"audit/trail.key\"\n\
         [service.audit.export]\nenabled = true\ntransport = \"tls\"\naddress = \"siem\"\n",
    );
    let keys: Vec<_> = found.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        [
            ("service.audit.key_file", 3),
            ("service.audit.export.ca_file", 4),
            ("service.audit.export.address", 7),
        ],
        "{found:?}"
    );
    assert_eq!(found[0].file, file);
    assert!(
        found[0].message.contains("audit trail's directory"),
        "{found:?}"
    );
    let (_, udp) = problems("[service.audit.export]\nenabled = true\ntransport = \"udp\"\n");
    assert_eq!(udp.len(), 1, "{udp:?}");
    assert!(udp[0].key.starts_with("service.audit"), "{udp:?}");
}

#[test]
fn notify_webhooks_are_read_from_notifications_and_their_mistakes_named() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = OperatorConfig::load(write(dir.path(), &plugin(""))).unwrap();
    assert!(defaults.notifications.webhooks.is_empty(), "off by default");
    let text = format!(
        "[notifications]\nqueue_size = 10\n\n[[notifications.webhooks]]\nname = \"soc\"\n\
         url = \"https://hooks.example.com/services/PATHSECRET\"\nformat = \"slack\"\n\n{}",
        plugin("")
    );
    let config = OperatorConfig::load(write(dir.path(), &text)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.notifications.queue_size, 10);
    let hook = &config.notifications.webhooks[0];
    assert_eq!(
        (hook.name.as_str(), hook.target.as_str()),
        ("soc", "https://hooks.example.com")
    );
    assert_eq!(hook.format, riposte_notify::Format::Slack);
    assert_eq!(
        hook.events.len(),
        riposte_notify::EventKind::ALL.len(),
        "every event by default"
    );

    // The notify crate's checks, placed at file, line and key; the URL is never repeated.
    let (file, found) = problems(
        "[notifications]\nmax_attempts = 0\n[[notifications.webhooks]]\n\
         url = \"ftp://hooks.example.com/PATHSECRET\"\nevents = [\"approval-neede\"]\n",
    );
    let keys: Vec<(&str, usize)> = found.iter().map(|p| (p.key.as_str(), p.line)).collect();
    assert_eq!(
        keys,
        [
            ("notifications.max_attempts", 2),
            ("notifications.webhooks[0].url", 4),
            ("notifications.webhooks[0].events[0]", 5),
        ],
        "{found:?}"
    );
    assert!(found.iter().all(|p| p.file == file));
    assert!(
        found[2].message.contains("did you mean `approval-needed`?"),
        "{found:?}"
    );
    assert!(!format!("{found:?}").contains("PATHSECRET"), "{found:?}");
}
