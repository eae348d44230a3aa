//! The operator's console in a real browser: Debian's headless Chromium driven over WebDriver
//! (chromedriver; `tests/browser.sh` installs both) against the real `riposte run` serving
//! `[console]`, the ransomware-containment plugin and the simulator on loopback. Two
//! approvers approve one isolation (quorum 2), it reaches the server once; a viewer has no
//! buttons and a forged form without the CSRF token is refused; an idle session is sent back
//! to the login page. The test also saves a screenshot of the overview (for README).

use fantoccini::{Client, ClientBuilder, Locator};
use riposte_domain::now_ms;
use riposte_e2e::service_support::{
    PluginSpec, ServiceEnv, Setup, actions_carried_out, riposte_bin, start_sim, wait_until,
};
use riposte_store::prelude::*;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

const ISOLATE: &str = "/rest/monitor/global/commands/isolate";
/// How long a page may take to come after a click that navigates.
const PAGE_WAIT: Duration = Duration::from_secs(20);
/// Seconds a console session may stay unused in this test.
const IDLE_SECS: u64 = 6;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Adds a console user through the real CLI (the password on stdin).
fn add_user(config: &str, name: &str, role: &str, password: &str) {
    let mut child = Command::new(riposte_bin())
        .args([
            "users",
            "add",
            "--config",
            config,
            name,
            "--role",
            role,
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riposte users add starts");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("the password is written");
    let out = child.wait_with_output().expect("riposte users add ends");
    assert!(
        out.status.success(),
        "riposte users add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Chromedriver on a free port, stopped on drop.
struct Driver {
    child: tokio::process::Child,
    url: String,
    /// The browsers' profile directories, removed after the browsers have ended.
    profiles: std::sync::Mutex<Vec<tempfile::TempDir>>,
}

impl Driver {
    async fn start() -> Self {
        let out = Command::new("tests/browser.sh")
            .current_dir(riposte_e2e::root())
            .output()
            .expect("tests/browser.sh runs");
        assert!(
            out.status.success(),
            "the browser test needs Chromium and ChromeDriver: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let chromedriver = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let port = free_port();
        let child = tokio::process::Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, which the browsers it starts join: dropping the driver
            // ends them all, also when a test panics before closing its session.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        wait_until("chromedriver to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profiles: std::sync::Mutex::default(),
        }
    }

    /// A new headless Chromium session with an empty profile.
    async fn browser(&self) -> Client {
        let profile = tempfile::tempdir().expect("a profile directory");
        let profile_dir = profile.path().to_owned();
        self.profiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(profile);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1366,900",
                    format!("--user-data-dir={}", profile_dir.display()),
                ]
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(group) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
    }
}

/// Types `text` into the element `#id`.
async fn fill(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await;
    let field = field.unwrap_or_else(|e| panic!("#{id}: {e}"));
    field.send_keys(text).await.expect("typing");
}

/// Clicks the element `#id`.
async fn click(browser: &Client, id: &str) {
    let button = browser.find(Locator::Id(id)).await;
    let button = button.unwrap_or_else(|e| panic!("#{id}: {e}"));
    button.click().await.expect("clicking");
}

/// Submits the login form as `name` with `password`.
async fn submit_login(browser: &Client, base: &str, name: &str, password: &str) {
    let page = format!("{base}/login");
    browser.goto(&page).await.expect("the login page");
    fill(browser, "username", name).await;
    fill(browser, "password", password).await;
    click(browser, "login").await;
}

async fn log_in(browser: &Client, base: &str, name: &str, password: &str) {
    submit_login(browser, base, name, password).await;
    let who = browser
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Id("whoami"))
        .await;
    let who = who.expect("logged in: #whoami");
    assert!(who.text().await.unwrap().contains(name));
}

async fn log_out(browser: &Client, base: &str) {
    browser.goto(base).await.expect("the overview");
    click(browser, "logout").await;
    browser
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Id("login-form"))
        .await
        .expect("back at the login page");
}

/// The page's text once it contains `needle` (the browser navigates on its own after a form
/// is submitted by script, so the body may be missing or stale while the next page loads:
/// that is read as "not yet"); fails after 20 s.
async fn text_once(browser: &Client, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = match browser.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Ok(text) = &text
            && text.contains(needle)
        {
            return text.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page never said `{needle}`: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn page_text(browser: &Client) -> String {
    browser
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_approvers_approve_in_the_browser_a_viewer_cannot_and_forgeries_are_refused() {
    let sim = start_sim(7, 12).await;
    let console_port = free_port();
    let setup = Setup::new(vec![PluginSpec::ransomware_containment()])
        .approvals(&["isolate"], 3600)
        .with_toml(&format!(
            "[approvals.quorum]\nisolate = 2\n\n[console]\nlisten = \"127.0.0.1:{console_port}\"\nsession_idle_secs = {IDLE_SECS}\n"
        ));
    let env = ServiceEnv::new(&sim, &setup);
    let config = env.config.display().to_string();
    for (name, role) in [
        ("alice", "approver"),
        ("bob", "approver"),
        ("vic", "viewer"),
    ] {
        add_user(
            &config,
            name,
            role,
            &format!("{name}-correct-horse-battery"),
        );
    }
    let mut run = env.spawn_run(0);
    let base = format!("http://127.0.0.1:{console_port}");
    let store = env.store();
    wait_until(
        "isolations held for approval",
        Duration::from_secs(60),
        || {
            store
                .list_pending(now_ms())
                .map(|p| p.len() >= 2)
                .unwrap_or(false)
        },
    )
    .await;
    wait_until("the console to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", console_port)).is_ok()
    })
    .await;
    let pending = store.list_pending(now_ms()).unwrap();
    let (target, other) = (&pending[0].action, &pending[1].action);
    let malop = target
        .malop_id
        .clone()
        .expect("an isolation names its Malop");

    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // Not logged in: sent to the login page.
    browser.goto(&base).await.unwrap();
    browser
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Id("login-form"))
        .await
        .expect("the login page first");

    // Alice sees the pending isolation and approves it: one of two.
    log_in(&browser, &base, "alice", "alice-correct-horse-battery").await;
    browser.goto(&format!("{base}/approvals")).await.unwrap();
    let listed = page_text(&browser).await;
    assert!(
        listed.contains("isolate") && listed.contains(target.id.as_str()),
        "{listed}"
    );
    browser
        .goto(&format!("{base}/approvals/{}", target.id))
        .await
        .unwrap();
    click(&browser, "approve").await;
    let after = text_once(&browser, "1 of 2").await;
    assert!(
        after.contains("console:alice"),
        "the page names who approved: {after}"
    );
    assert!(
        actions_carried_out(&sim).iter().all(|(p, _)| p != ISOLATE),
        "one approval sends nothing"
    );
    // Approving twice as the same person is refused.
    browser
        .goto(&format!("{base}/approvals/{}", target.id))
        .await
        .unwrap();
    click(&browser, "approve").await;
    text_once(&browser, "already approved").await;
    log_out(&browser, &base).await;

    // Bob's approval reaches the quorum; the service isolates once.
    log_in(&browser, &base, "bob", "bob-correct-horse-battery").await;
    browser
        .goto(&format!("{base}/approvals/{}", target.id))
        .await
        .unwrap();
    click(&browser, "approve").await;
    wait_until(
        "the approved isolation at the simulator",
        Duration::from_secs(60),
        || actions_carried_out(&sim).iter().any(|(p, _)| p == ISOLATE),
    )
    .await;
    browser.goto(&base).await.unwrap();
    let overview = page_text(&browser).await;
    assert!(
        overview.contains(malop.as_str()) || overview.contains(target.id.as_str()),
        "{overview}"
    );
    let shot = browser
        .screenshot()
        .await
        .expect("a screenshot of the overview");
    let shot_path = riposte_e2e::root().join("target/console-overview.png");
    std::fs::write(&shot_path, &shot).expect("the screenshot is saved");
    log_out(&browser, &base).await;

    // A viewer sees the other approval without buttons, and a forged form (no CSRF token) is
    // refused.
    log_in(&browser, &base, "vic", "vic-correct-horse-battery").await;
    browser
        .goto(&format!("{base}/approvals/{}", other.id))
        .await
        .unwrap();
    assert!(
        browser.find(Locator::Id("approve")).await.is_err(),
        "a viewer has no #approve"
    );
    let forged = format!(
        "const f = document.createElement('form'); f.method = 'post'; f.action = '/approvals/{}/approve'; document.body.appendChild(f); f.submit();",
        other.id
    );
    browser
        .execute(&forged, vec![])
        .await
        .expect("the forged form is submitted");
    text_once(&browser, "not from your session").await;
    let title = browser.title().await.expect("the refusal's title");
    assert!(title.contains("403"), "refused as forbidden: {title}");
    assert_eq!(
        store.get_action(&other.id).unwrap().state,
        riposte_store::ActionState::AwaitingApproval,
        "the forged approval changed nothing"
    );

    // An idle session ends: the next page is the login page.
    let idle_from = now_ms();
    wait_until(
        "the session's idle limit",
        Duration::from_secs(IDLE_SECS + 5),
        || now_ms() > idle_from + (IDLE_SECS as i64) * 1000 + 500,
    )
    .await;
    browser.goto(&format!("{base}/approvals")).await.unwrap();
    browser
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Id("login-form"))
        .await
        .expect("an expired session is sent to log in");

    // Exactly one isolation, for the approved action only.
    let isolations: Vec<_> = actions_carried_out(&sim)
        .into_iter()
        .filter(|(p, _)| p == ISOLATE)
        .collect();
    assert_eq!(isolations.len(), 1, "{isolations:?}");
    assert!(isolations[0].1.contains(malop.as_str()));
    browser.close().await.expect("the browser closes");
    run.kill().await.expect("riposte run stops");
}

/// `the console: URL (log in as NAME with PASSWORD; this run only)` → (URL, NAME, PASSWORD).
pub(crate) fn console_login(line: &str) -> Option<(String, String, String)> {
    let rest = line.trim().strip_prefix("the console: ")?;
    let (url, rest) = rest.split_once(" (log in as ")?;
    let (name, rest) = rest.split_once(" with ")?;
    let (password, _) = rest.split_once(';')?;
    Some((url.to_owned(), name.to_owned(), password.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_its_console_with_a_one_time_login() {
    use tokio::io::AsyncBufReadExt as _;
    let workdir = tempfile::tempdir().expect("a temporary directory");
    let mut demo = tokio::process::Command::new(riposte_bin())
        .args(["demo", "--keep-running", "--workdir"])
        .arg(workdir.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the demo starts");
    let mut stderr = tokio::io::BufReader::new(demo.stderr.take().expect("stderr")).lines();
    let mut stdout = tokio::io::BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let find_login = async {
        while let Some(line) = stderr.next_line().await.expect("the demo's stderr") {
            if let Some(login) = console_login(&line) {
                return login;
            }
        }
        panic!("the demo ended without printing its console's login");
    };
    let (url, name, password) = tokio::time::timeout(Duration::from_secs(180), find_login)
        .await
        .expect("the demo prints its console's login within 3 minutes");
    // The summary comes, then the demo keeps serving.
    let summary = async {
        while let Some(line) = stdout.next_line().await.expect("the demo's stdout") {
            if line.contains("Ctrl-C stops the demo") {
                assert!(line.contains(&url) && line.contains(&password), "{line}");
                return;
            }
        }
        panic!("the demo ended instead of staying up");
    };
    tokio::time::timeout(Duration::from_secs(180), summary)
        .await
        .expect("the demo prints its summary and keeps running");

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    log_in(&browser, &url, &name, &password).await;
    browser.goto(&url).await.unwrap();
    let overview = page_text(&browser).await;
    for plugin in ["ransomware-containment", "cleanup", "reputation-feed"] {
        assert!(
            overview.contains(plugin),
            "the overview lists {plugin}: {overview}"
        );
    }
    assert!(overview.contains("Pending approvals"), "{overview}");
    let shot = browser
        .screenshot()
        .await
        .expect("a screenshot of the demo's console");
    std::fs::write(riposte_e2e::root().join("target/console-demo.png"), &shot)
        .expect("the screenshot is saved");
    // The login is of this run only: a wrong password is refused.
    log_out(&browser, &url).await;
    submit_login(&browser, &url, &name, "not-the-password").await;
    browser
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Id("error"))
        .await
        .expect("a wrong password is refused");
    browser.close().await.expect("the browser closes");
    demo.kill().await.expect("the demo stops");
}
