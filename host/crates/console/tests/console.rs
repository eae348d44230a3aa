//! The console over HTTP on loopback: the real router and a real store (SQLite in a
//! temporary directory, or a fresh database on the test PostgreSQL server for the tests
//! run on both backends), driven with reqwest; time is the test's clock.

use riposte_audit::{AuditSink, FsyncPolicy};
use riposte_console::{Console, ConsoleConfig, ConsoleServer, SESSION_COOKIE, auth};
use riposte_domain::{
    ActionRequest, MachineGuid, MalopId, PluginName, Role, Sha256Digest, UserName,
};
use riposte_metrics::Metrics;
use riposte_service::{Auditor, OperatorConfig};
use riposte_store::prelude::*;
use riposte_store::testing::TestDatabase;
use riposte_store::{ActionId, ActionMode, ActionState, BeginOutcome, NewAction, Outcome, Store};
use riposte_store::{DecisionCounts, HOUR_MS, HostStatus, PluginActivity};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const T0: i64 = 1_764_590_400_000; // 2025-12-01 12:00 UTC
const PASSWORD: &str = "a long enough password";

struct Harness {
    _dir: tempfile::TempDir,
    _db: TestDatabase,
    config_path: PathBuf,
    store: Arc<Store>,
    audit_path: PathBuf,
    clock: Arc<AtomicI64>,
    server: ConsoleServer,
    http: reqwest::Client,
}

/// The plugin the test configuration names (its component is never loaded here).
const PLUGIN: &str = "isolator";

/// Runs each `async fn name(h: Harness)` it names as two tests, `name::sqlite` and
/// `name::postgres`, each on a fresh database of its backend. On a multi-threaded runtime:
/// the PostgreSQL store blocks, off the async workers (`block_in_place`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Harness::on(riposte_store::testing::TestDatabase::sqlite()).await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Harness::on(riposte_store::testing::TestDatabase::postgres()).await).await
            }
        }
    )*};
}

on_both_backends!(
    approvals_through_the_page_are_recorded_by_the_console_users,
    every_page_renders_and_the_chain_verifies_from_the_page,
    a_time_boxed_containment_is_extended_and_confirmed_from_the_page,
    a_session_outlives_a_restart_of_the_console_and_ends_with_its_user,
    the_overview_shows_each_plugins_activity_and_the_last_syslog_event,
);

impl Harness {
    async fn start() -> Self {
        Self::on(TestDatabase::sqlite()).await
    }

    /// A console over a fresh database `db`.
    async fn on(db: TestDatabase) -> Self {
        Self::start_with("", reqwest::Client::builder(), db).await
    }

    /// A console over `db` whose `[console]` section also holds `console`, asked by `http`.
    async fn start_with(console: &str, http: reqwest::ClientBuilder, db: TestDatabase) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("riposte.toml");
        let text = format!(
            "[service]\n[service.database]\npath = \"riposte.db\"\n[service.audit]\npath = \"audit.jsonl\"\n\
             [[plugins]]\nname = \"{PLUGIN}\"\npath = \"{PLUGIN}.wasm\"\nsha256 = \"{}\"\n[console]\n{console}",
            Sha256Digest::of(b"isolator.wasm").to_hex()
        );
        std::fs::write(&config_path, text).unwrap();
        let operator = OperatorConfig::load(&config_path).unwrap();
        let audit_path = operator.service.audit.path.clone();
        let store = Arc::new(db.open());
        for (name, role) in [
            ("alice", Role::Approver),
            ("bob", Role::Admin),
            ("victor", Role::Viewer),
        ] {
            let hash = auth::hash_password(PASSWORD).unwrap();
            store
                .add_user(&UserName::parse(name).unwrap(), role, &hash, T0)
                .unwrap();
        }
        let clock = Arc::new(AtomicI64::new(T0));
        let server = serve(&config_path, &store, &clock).await;
        let http = http
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            _dir: dir,
            _db: db,
            config_path,
            store,
            audit_path,
            clock,
            server,
            http,
        }
    }

    /// Stops the console and starts another over the same store and configuration, as a
    /// restart of riposte would (or another host on the same database).
    async fn restart(&mut self) {
        self.server = serve(&self.config_path, &self.store, &self.clock).await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    async fn login_as(&self, name: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.url("/login"))
            .form(&[("username", name), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    /// Logs in and returns the session cookie (`name=value`).
    async fn session(&self, name: &str) -> String {
        let response = self.login_as(name, PASSWORD).await;
        assert_eq!(response.status(), 303, "{name} logs in");
        let set = response.headers()["set-cookie"].to_str().unwrap();
        set.split(';').next().unwrap().to_owned()
    }

    async fn get(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, cookie: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("cookie", cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// An isolation waiting for approval, from a plugin whose reason tries to inject markup.
    fn pending(&self) -> (ActionId, Sha256Digest) {
        self.pending_for(1)
    }

    /// As [`Harness::pending`], needing `quorum` distinct approvers.
    fn pending_for(&self, quorum: u32) -> (ActionId, Sha256Digest) {
        let new = NewAction::new(
            PluginName::new("isolator"),
            Sha256Digest::of(b"isolator.wasm"),
            ActionRequest::Isolate {
                malop_id: Some(MalopId::new("11.42")),
                machines: vec![MachineGuid::new("-1845090846.1198775089551518743")],
            },
            "<script>alert(1)</script> lateral movement",
        )
        .with_mode(ActionMode::AwaitApproval {
            expires_at_ms: T0 + 3_600_000,
            quorum,
        });
        let BeginOutcome::New(id) = self.store.begin_action(&new, T0).unwrap() else {
            panic!("a new action");
        };
        let record = self.store.get_action(&id).unwrap();
        (id, record.request_hash)
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit_path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A console over `store` configured by `config_path`, on a loopback port, on `clock`.
async fn serve(config_path: &Path, store: &Arc<Store>, clock: &Arc<AtomicI64>) -> ConsoleServer {
    let operator = OperatorConfig::load(config_path).unwrap();
    let settings = ConsoleConfig::load(config_path)
        .unwrap()
        .expect("[console] is there");
    let sink = AuditSink::open(&operator.service.audit.path, FsyncPolicy::EveryRecord).unwrap();
    let auditor = Arc::new(Auditor::new(sink, Arc::new(Metrics::new())));
    let now = clock.clone();
    let console = Console::with_clock(
        settings,
        Arc::new(operator),
        store.clone(),
        auditor,
        Arc::new(move || now.load(Ordering::SeqCst)),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    console.serve_on(listener).unwrap()
}

/// The CSRF token of the page at `path`.
async fn csrf(h: &Harness, cookie: &str, path: &str) -> String {
    let page = h.get(cookie, path).await.text().await.unwrap();
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with the token")
        + 19;
    page[at..at + 64].to_owned()
}

fn is_login_redirect(response: &reqwest::Response) -> bool {
    response.status() == 303 && response.headers()["location"] == "/login"
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_a_bad_password_is_refused() {
    let h = Harness::start().await;
    let bad = h.login_as("alice", "not her password").await;
    assert_eq!(bad.status(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    let unknown = h.login_as("mallory", PASSWORD).await;
    assert_eq!(unknown.status(), 401);

    let ok = h.login_as("alice", PASSWORD).await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/");
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("{SESSION_COOKIE}=")),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    assert_eq!(value.len(), 64, "a 256-bit token in hex");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );

    let page = h.get(cookie.split(';').next().unwrap(), "/").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    assert!(page.text().await.unwrap().contains("alice (approver)"));

    // Without a session every page sends to the login page.
    assert!(is_login_redirect(&h.get("", "/approvals").await));
    let events: Vec<String> = h
        .audit()
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["call"].as_str().unwrap(),
                r["arguments"]["by"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            "console-login-failed console:alice",
            "console-login-failed console:mallory",
            "console-login console:alice"
        ]
    );
    assert!(
        !std::fs::read_to_string(&h.audit_path)
            .unwrap()
            .contains(PASSWORD),
        "no password in the audit trail"
    );
}

#[tokio::test]
async fn logins_are_rate_limited_per_user_name() {
    let h = Harness::start().await;
    for _ in 0..auth::MAX_LOGIN_FAILURES {
        assert_eq!(h.login_as("alice", "wrong password!").await.status(), 401);
    }
    // Even the right password is refused now, until the window passes.
    assert_eq!(h.login_as("alice", PASSWORD).await.status(), 429);
    h.clock.fetch_add(5 * 60 * 1000 + 1, Ordering::SeqCst);
    assert_eq!(h.login_as("alice", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn logins_are_rate_limited_per_source_address() {
    let h = Harness::start().await;
    for i in 0..auth::MAX_FAILURES_PER_ADDRESS {
        let name = format!("guess{i}");
        assert_eq!(h.login_as(&name, "wrong password!").await.status(), 401);
    }
    // Another name from the same address is refused too.
    assert_eq!(h.login_as("victor", PASSWORD).await.status(), 429);
    let refused = h
        .audit()
        .into_iter()
        .filter(|r| r["call"] == "console-login-refused")
        .count();
    assert_eq!(refused, 1, "the refusal is audited");
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_forbidden() {
    let h = Harness::start().await;
    let (id, hash) = h.pending();
    let cookie = h.session("alice").await;
    let path = format!("/approvals/{}/approve", id.as_str());
    let forged = h.post(&cookie, &path, &[("hash", &hash.to_hex())]).await;
    assert_eq!(forged.status(), 403);
    let wrong = h
        .post(
            &cookie,
            &path,
            &[("csrf", &"0".repeat(64)), ("hash", &hash.to_hex())],
        )
        .await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(h.post(&cookie, "/logout", &[]).await.status(), 403);
    assert_eq!(
        h.store.get_action(&id).unwrap().state,
        ActionState::AwaitingApproval
    );
}

#[tokio::test]
async fn a_viewer_sees_no_buttons_and_cannot_approve() {
    let h = Harness::start().await;
    let (id, hash) = h.pending();
    let cookie = h.session("victor").await;
    let path = format!("/approvals/{}", id.as_str());
    let page = h.get(&cookie, &path).await.text().await.unwrap();
    assert!(page.contains(&hash.to_hex()), "the evidence is shown");
    assert!(!page.contains("id=\"approve\"") && !page.contains("id=\"deny\""));
    let token = csrf(&h, &cookie, &path).await;
    for verb in ["approve", "deny"] {
        let response = h
            .post(
                &cookie,
                &format!("{path}/{verb}"),
                &[("csrf", &token), ("hash", &hash.to_hex())],
            )
            .await;
        assert_eq!(response.status(), 403, "{verb}");
    }
    assert_eq!(
        h.store.get_action(&id).unwrap().state,
        ActionState::AwaitingApproval
    );
}

#[tokio::test]
async fn an_expired_session_is_sent_to_the_login_page() {
    let h = Harness::start().await;
    let cookie = h.session("alice").await;
    assert_eq!(h.get(&cookie, "/").await.status(), 200);
    let idle = riposte_console::config::DEFAULT_SESSION_IDLE_SECS as i64 * 1000;
    h.clock.fetch_add(idle - 1, Ordering::SeqCst);
    assert_eq!(h.get(&cookie, "/").await.status(), 200, "used just in time");
    h.clock.fetch_add(idle, Ordering::SeqCst);
    assert!(is_login_redirect(&h.get(&cookie, "/").await));
    assert!(
        is_login_redirect(&h.get(&cookie, "/approvals").await),
        "and stays ended"
    );
}

async fn approvals_through_the_page_are_recorded_by_the_console_users(h: Harness) {
    let (id, hash) = h.pending_for(2);
    let cookie = h.session("alice").await;
    let path = format!("/approvals/{}", id.as_str());
    let page = h.get(&cookie, &path).await.text().await.unwrap();
    assert!(page.contains("id=\"approve\"") && page.contains("id=\"deny\""));
    assert!(page.contains(&format!("action=\"/approvals/{}/approve\"", id.as_str())));
    assert!(!page.contains("<script>"), "plugin text is escaped");
    assert!(page.contains("&lt;script&gt;"));
    let list = h.get(&cookie, "/approvals").await.text().await.unwrap();
    assert!(list.contains("isolate 1 machine"), "{list}");

    let approve = |cookie: String, token: String| {
        let h = &h;
        let path = format!("{path}/approve");
        let hash = hash.to_hex();
        async move {
            h.post(&cookie, &path, &[("csrf", &token), ("hash", &hash)])
                .await
        }
    };
    let token = csrf(&h, &cookie, &path).await;
    assert_eq!(approve(cookie.clone(), token.clone()).await.status(), 303);
    assert_eq!(
        h.store.get_action(&id).unwrap().state,
        ActionState::AwaitingApproval,
        "one of two"
    );
    let page = h.get(&cookie, &path).await.text().await.unwrap();
    assert!(page.contains("1 of 2: console:alice"), "{page}");
    // The same person cannot approve twice.
    assert_eq!(approve(cookie.clone(), token.clone()).await.status(), 409);

    let other = h.session("bob").await;
    let other_token = csrf(&h, &other, &path).await;
    assert_eq!(approve(other, other_token).await.status(), 303);
    assert_eq!(
        h.store.get_action(&id).unwrap().state,
        ActionState::Approved
    );
    let claimed = h.store.claim_approved(T0 + 1).unwrap();
    assert_eq!(claimed[0].approved_by, ["console:alice", "console:bob"]);
    let granted: Vec<_> = h
        .audit()
        .into_iter()
        .filter(|r| r["call"] == "approval-granted")
        .collect();
    assert_eq!(granted.len(), 2, "each approval is audited");
    assert_eq!(granted[0]["arguments"]["by"], "console:alice");
    assert_eq!(granted[1]["arguments"]["by"], "console:bob");
    assert_eq!(granted[0]["arguments"]["action_id"], id.as_str());
    assert_eq!(granted[0]["plugin"], "isolator");
    assert!(
        h.audit().iter().any(|r| r["call"] == "approval-refused"),
        "the refused second approval is audited too"
    );

    // Decided: a denial now is refused, nothing changes.
    let again = h
        .post(
            &cookie,
            &format!("{path}/deny"),
            &[("csrf", &token), ("hash", &hash.to_hex())],
        )
        .await;
    assert_eq!(again.status(), 409);
}

async fn every_page_renders_and_the_chain_verifies_from_the_page(h: Harness) {
    let (_id, _) = h.pending();
    let cookie = h.session("alice").await;
    for path in [
        "/",
        "/approvals",
        "/malops/11.42",
        "/audit",
        "/audit?decision=deny&from=2025-12-01T00:00",
        "/shadow?hours=48",
    ] {
        let response = h.get(&cookie, path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let overview = h.get(&cookie, "/").await.text().await.unwrap();
    assert!(overview.contains("<svg"), "pictures are inline SVG");
    let token = csrf(&h, &cookie, "/audit").await;
    let verified = h.post(&cookie, "/audit/verify", &[("csrf", &token)]).await;
    assert_eq!(verified.status(), 200);
    let text = verified.text().await.unwrap();
    assert!(text.contains("id=\"verified\" class=\"ok\""), "{text}");
    assert!(text.contains("chain intact"), "{text}");
    // Logging out ends the session.
    assert_eq!(
        h.post(&cookie, "/logout", &[("csrf", &token)])
            .await
            .status(),
        303
    );
    assert!(is_login_redirect(&h.get(&cookie, "/").await));
}

#[tokio::test]
async fn a_large_body_is_refused() {
    let h = Harness::start().await;
    let big = "x".repeat(riposte_console::MAX_BODY_BYTES + 1);
    let response = h.login_as("alice", &big).await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn over_tls_the_cookie_is_secure() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        dir.path().join("console.pem"),
        dir.path().join("console.key"),
    );
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let root = reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap();
    let h = Harness::start_with(
        &format!(
            "tls = {{ cert_file = \"{}\", key_file = \"{}\" }}\n",
            cert.display(),
            key.display()
        ),
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root),
        TestDatabase::sqlite(),
    )
    .await;
    assert!(h.server.url().starts_with("https://"), "{}", h.server.url());
    let ok = h.login_as("alice", PASSWORD).await;
    assert_eq!(ok.status(), 303);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    assert_eq!(h.get(&session, "/").await.status(), 200);
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused_without_the_proxy_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("riposte.toml");
    std::fs::write(&config_path, "[console]\n").unwrap();
    let operator = OperatorConfig::load(&config_path).unwrap();
    let settings = ConsoleConfig::load(&config_path).unwrap().unwrap();
    let store = Arc::new(Store::open_in_memory().unwrap());
    let auditor = Arc::new(Auditor::new(AuditSink::memory(), Arc::new(Metrics::new())));
    let console = Console::new(settings, Arc::new(operator), store, auditor).unwrap();
    // Every address of this machine: not a loopback one.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = console.serve_on(listener).err().expect("refused");
    assert!(
        refused.to_string().contains("not a loopback address"),
        "{refused}"
    );
}

async fn a_time_boxed_containment_is_extended_and_confirmed_from_the_page(h: Harness) {
    let new = NewAction::new(
        PluginName::new("isolator"),
        Sha256Digest::of(b"isolator.wasm"),
        ActionRequest::Isolate {
            malop_id: Some(MalopId::new("11.7")),
            machines: vec![MachineGuid::new("-1.2")],
        },
        "ransomware",
    );
    let BeginOutcome::New(id) = h.store.begin_action(&new, T0).unwrap() else {
        panic!("a new action");
    };
    h.store
        .mark_submitted(&id, None, &serde_json::json!({}), T0)
        .unwrap();
    h.store.finish(&id, Outcome::Succeeded, None, T0).unwrap();
    let boxed = h.store.start_time_box(&id, 3_600_000, T0).unwrap();

    let viewer = h.session("victor").await;
    let page = h.get(&viewer, "/containment").await.text().await.unwrap();
    assert!(page.contains(&format!("box-{}", id.as_str())), "{page}");
    assert!(!page.contains("/confirm"), "a viewer sees no buttons");
    let token = csrf(&h, &viewer, "/containment").await;
    let confirm = format!("/containment/{}/confirm", id.as_str());
    assert_eq!(
        h.post(&viewer, &confirm, &[("csrf", &token)])
            .await
            .status(),
        403
    );

    let cookie = h.session("alice").await;
    let token = csrf(&h, &cookie, "/containment").await;
    let extend = format!("/containment/{}/extend", id.as_str());
    assert_eq!(
        h.post(&cookie, &extend, &[("csrf", &token), ("hours", "0")])
            .await
            .status(),
        400
    );
    assert_eq!(
        h.post(&cookie, &extend, &[("csrf", &token), ("hours", "2")])
            .await
            .status(),
        303
    );
    let extended = h.store.time_box(&id).unwrap().unwrap();
    assert_eq!(extended.deadline_ms, boxed.deadline_ms + 2 * 3_600_000);
    assert_eq!(extended.extended_by.as_deref(), Some("console:alice"));
    assert_eq!(
        h.post(&cookie, &confirm, &[("csrf", &token)])
            .await
            .status(),
        303
    );
    let confirmed = h.store.time_box(&id).unwrap().unwrap();
    assert_eq!(confirmed.confirmed_by.as_deref(), Some("console:alice"));
    let calls: Vec<String> = h
        .audit()
        .iter()
        .map(|r| r["call"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        calls.contains(&"containment-extended".to_owned()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"containment-confirmed".to_owned()),
        "{calls:?}"
    );
    // Confirmed: it leaves the page, and a second confirmation is refused.
    assert!(
        !h.get(&cookie, "/containment")
            .await
            .text()
            .await
            .unwrap()
            .contains(&format!("box-{}", id.as_str()))
    );
    assert_eq!(
        h.post(&cookie, &confirm, &[("csrf", &token)])
            .await
            .status(),
        409
    );
}

async fn a_session_outlives_a_restart_of_the_console_and_ends_with_its_user(mut h: Harness) {
    let cookie = h.session("alice").await;
    let token = csrf(&h, &cookie, "/audit").await;
    h.restart().await;
    assert_eq!(h.get(&cookie, "/").await.status(), 200, "still logged in");
    assert_eq!(csrf(&h, &cookie, "/audit").await, token, "same CSRF token");
    let token_of_cookie = cookie.split_once('=').unwrap().1;
    let stored = h.store.session(token_of_cookie).unwrap();
    assert!(
        stored.is_none(),
        "the store keys sessions by the token's hash only"
    );
    // A new password ends every session of the user.
    let hash = auth::hash_password("another long password").unwrap();
    h.store
        .set_user_password(&UserName::parse("alice").unwrap(), &hash, T0)
        .unwrap();
    assert!(is_login_redirect(&h.get(&cookie, "/").await));
}

async fn the_overview_shows_each_plugins_activity_and_the_last_syslog_event(h: Harness) {
    let now = T0;
    let activity = |hours_ago: i64, allowed, denied, last: Option<i64>| PluginActivity {
        invocations: 3,
        traps: 1,
        decisions: DecisionCounts {
            allowed,
            denied,
            shadowed: 0,
            awaiting: 0,
        },
        last_invocation_ms: last,
        ..PluginActivity::empty(PluginName::new(PLUGIN), now - hours_ago * HOUR_MS)
    };
    h.store
        .add_activity(
            &[
                activity(0, 4, 1, Some(now - 90_000)),
                activity(2, 2, 0, Some(now - 2 * HOUR_MS)),
                // Three days ago: only its traps count on the page (over 7 days).
                activity(72, 50, 50, Some(now - 72 * HOUR_MS)),
            ],
            0,
        )
        .unwrap();
    h.store
        .heartbeat(&HostStatus {
            host_id: "h1".to_owned(),
            version: "test".to_owned(),
            started_at_ms: now - HOUR_MS,
            heartbeat_ms: now,
            holding: String::new(),
            last_event_ms: Some(now - 5_000),
        })
        .unwrap();
    let cookie = h.session("victor").await;
    let page = h.get(&cookie, "/").await.text().await.unwrap();
    let row_at = page
        .find(&format!("id=\"plugin-{PLUGIN}\""))
        .expect("the plugin's row");
    let row = &page[row_at..row_at + page[row_at..].find("</tr>").unwrap()];
    assert!(row.contains("<td class=\"invocations\">6</td>"), "{row}");
    assert!(
        row.contains("6 allowed, 0 awaiting, 0 shadowed, 1 denied"),
        "{row}"
    );
    assert!(row.contains("<td class=\"traps\">3</td>"), "{row}");
    assert!(row.contains("(1m ago)"), "the last invocation: {row}");
    assert!(
        page.contains("aria-label=\"decisions per hour of isolator\""),
        "a picture of the plugin's decisions"
    );
    assert!(
        page.contains("allowed (6)") && page.contains("denied (1)"),
        "its legend"
    );
    assert!(
        page.contains("Last syslog event: 2025-12-01 11:59:55 (5s ago)."),
        "{page}"
    );
}
