//! The notifier against real loopback receivers: the bodies it posts, its retries, what it
//! does not retry, and that a receiver that never answers holds nobody up.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use riposte_domain::{MalopId, PluginName};
use riposte_notify::{BudgetOwner, Event, NotificationsConfig, Notifier, RawNotifications};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    headers: HeaderMap,
    body: serde_json::Value,
}

#[derive(Clone)]
struct Receiver {
    /// The statuses to answer, in order; 200 once they run out.
    script: Arc<Mutex<VecDeque<u16>>>,
    got: mpsc::UnboundedSender<Received>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let body = serde_json::from_str(&body).expect("the notifier posts JSON");
    let _ = r.got.send(Received { headers, body });
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// A receiver on loopback answering `script` then 200: its URL, and what it receives.
async fn receiver(script: &[u16]) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Receiver {
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        got: tx,
    };
    let app = Router::new()
        .route("/hook/{secret}", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook/PATHSECRET"), rx)
}

fn config(text: &str, base: &Path) -> NotificationsConfig {
    let raw: RawNotifications = toml::from_str(text).expect("the section parses");
    let (config, findings) = NotificationsConfig::from_section(raw, base);
    assert!(findings.is_empty(), "{findings:?}");
    config
}

fn one_hook(url: &str, extra: &str) -> String {
    format!(
        "host = \"soc-1\"\nfirst_retry_ms = 1\nmax_retry_ms = 5\n\
         [[webhooks]]\nname = \"test\"\nurl = {url:?}\n{extra}\n"
    )
}

fn approval(action: &str) -> Event {
    Event::ApprovalNeeded {
        action: action.into(),
        plugin: PluginName::new("ransomware-containment"),
        malop: Some(MalopId::new("11.-7780537507363356527")),
        summary: "isolate 2 machines".into(),
        expires_at_ms: 1_700_000_000_000,
    }
}

/// Sends `event` and waits until it is settled: the bodies the receiver got for it, and the
/// webhook's (delivered, failed, retries) so far.
async fn settle(
    notifier: &Notifier,
    rx: &mut mpsc::UnboundedReceiver<Received>,
    event: Event,
) -> (Vec<serde_json::Value>, (u64, u64, u64)) {
    notifier.notify(event);
    notifier.idle().await;
    let bodies = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|r| r.body)
        .collect();
    let stats = &notifier.stats()[0];
    (bodies, (stats.delivered, stats.failed, stats.retries))
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the receiver got a request in time")
        .expect("the receiver is up")
}

#[tokio::test]
async fn json_body_carries_the_event_its_link_and_a_bearer_token() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (url, mut rx) = receiver(&[]).await;
    let creds = dir.path().join("hook-credentials");
    std::fs::write(&creds, format!("url = {url}\ntoken = TOKENSECRET\n")).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = config(
        "host = \"soc-1\"\n[[webhooks]]\ncredentials_file = \"hook-credentials\"\n",
        dir.path(),
    );
    let console = url::Url::parse("https://riposte.example/console/").unwrap();
    let notifier = Notifier::start(&config, Some(console)).unwrap();
    notifier.notify(approval("0000-act"));
    let got = next(&mut rx).await;
    assert_eq!(got.headers["authorization"], "Bearer TOKENSECRET");
    assert_eq!(got.headers["content-type"], "application/json");
    let b = &got.body;
    assert_eq!(b["event"], "approval-needed");
    assert_eq!(b["host"], "soc-1");
    assert_eq!(b["action_id"], "0000-act");
    assert_eq!(b["plugin"], "ransomware-containment");
    assert_eq!(b["malop_id"], "11.-7780537507363356527");
    assert_eq!(
        b["link"],
        "https://riposte.example/console/approvals/0000-act"
    );
    assert_eq!(b["expires_at"], "2023-11-14T22:13:20Z");
    let at = b["at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    let summary = b["summary"].as_str().unwrap();
    assert!(summary.contains("isolate 2 machines"), "{summary}");
    let text = b.to_string();
    assert!(
        !text.contains("SECRET"),
        "no URL or token in the body: {text}"
    );
    notifier.idle().await;
    assert_eq!(notifier.stats()[0].delivered, 1);
}

#[tokio::test]
async fn slack_body_is_an_incoming_webhook_message() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut rx) = receiver(&[]).await;
    let notifier = Notifier::start(
        &config(&one_hook(&url, "format = \"slack\""), dir.path()),
        None,
    )
    .unwrap();
    notifier.notify(Event::BudgetTripped {
        owner: BudgetOwner::Global,
        plugin: PluginName::new("cleanup"),
        budget: "at most 5 `isolate` per 1h <@U123>".into(),
        used: 5,
        max: 5,
    });
    let got = next(&mut rx).await;
    let text = got.body["text"].as_str().unwrap();
    assert!(text.starts_with("Budget tripped:"), "{text}");
    assert!(
        text.contains("&lt;@U123&gt;") && !text.contains("<@U123>"),
        "{text}"
    );
    assert_eq!(got.body["blocks"][0]["type"], "section");
    let block = got.body["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        block.starts_with("*:no_entry: Budget tripped*\n"),
        "{block}"
    );
    assert!(
        !block.contains("Open in"),
        "no link without a console: {block}"
    );
    let context = got.body["blocks"][1]["elements"][0]["text"]
        .as_str()
        .unwrap();
    assert!(context.starts_with("riposte on soc-1 · "), "{context}");
}

#[tokio::test]
async fn a_5xx_is_retried_until_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut rx) = receiver(&[500, 503]).await;
    let notifier = Notifier::start(&config(&one_hook(&url, ""), dir.path()), None).unwrap();
    let (bodies, stats) = settle(&notifier, &mut rx, approval("a-1")).await;
    assert_eq!(bodies.len(), 3, "two refusals, then the delivery");
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "the same body each time"
    );
    assert_eq!(stats, (1, 0, 2));
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_429_is() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut rx) = receiver(&[400, 429]).await;
    let notifier = Notifier::start(&config(&one_hook(&url, ""), dir.path()), None).unwrap();
    let (bodies, stats) = settle(&notifier, &mut rx, approval("a-1")).await;
    assert_eq!((bodies.len(), stats), (1, (0, 1, 0)), "a 400 is final");
    // The next one meets a 429, then a 200.
    let (bodies, stats) = settle(&notifier, &mut rx, approval("a-2")).await;
    assert_eq!((bodies.len(), stats), (2, (1, 1, 1)), "a 429 is retried");
}

#[tokio::test]
async fn out_of_tries_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut rx) = receiver(&[500, 500, 500, 500]).await;
    let text = format!("max_attempts = 3\n{}", one_hook(&url, ""));
    let notifier = Notifier::start(&config(&text, dir.path()), None).unwrap();
    let (bodies, stats) = settle(&notifier, &mut rx, approval("a-1")).await;
    assert_eq!((bodies.len(), stats), (3, (0, 1, 2)));
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_nobody_up_and_drops_are_counted() {
    let (addr, mut accepted) = silent_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "queue_size = 2\nmax_attempts = 1000\n{}",
        one_hook(&format!("http://{addr}/hook"), "timeout_secs = 300")
    );
    let notifier = Notifier::start(&config(&text, dir.path()), None).unwrap();
    notifier.notify(approval("first"));
    // The first is being posted (the receiver holds its connection)...
    tokio::time::timeout(Duration::from_secs(30), accepted.recv())
        .await
        .expect("the notifier connected")
        .unwrap();
    // ...and every other notification returns at once, whatever the queue holds.
    let started = Instant::now();
    for i in 0..1_000 {
        notifier.notify(approval(&format!("a-{i}")));
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "1000 notifications took {took:?}"
    );
    let stats = &notifier.stats()[0];
    assert_eq!(stats.waiting, 2, "the queue stays bounded");
    assert_eq!(stats.dropped, 998, "the oldest are dropped, and counted");
    assert_eq!(stats.delivered + stats.failed, 0);
}

#[tokio::test]
async fn a_repeated_pause_is_sent_once_per_quiet_period_and_events_are_filtered() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut rx) = receiver(&[]).await;
    let text = one_hook(&url, "events = [\"plugin-paused\"]");
    let notifier = Notifier::start(&config(&text, dir.path()), None).unwrap();
    let paused = |plugin: &str| Event::PluginPaused {
        plugin: PluginName::new(plugin),
        reason: "3 traps in a row: out of fuel".into(),
        until_ms: Some(1_700_000_000_000),
    };
    notifier.notify(paused("a"));
    notifier.notify(paused("a"));
    notifier.notify(paused("b"));
    notifier.notify(approval("not wanted by this webhook"));
    notifier.idle().await;
    let events: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|r| format!("{} {}", r.body["event"], r.body["plugin"]))
        .collect();
    assert_eq!(
        events,
        ["\"plugin-paused\" \"a\"", "\"plugin-paused\" \"b\""]
    );
}

/// A listener on loopback that accepts connections and never answers: its address, and a
/// message per connection accepted.
async fn silent_receiver() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            let _ = accepted_tx.send(());
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_shutdown_delivers_what_is_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (url, mut rx) = receiver(&[]).await;
    let notifier = Notifier::start(&config(&one_hook(&url, ""), dir.path()), None).unwrap();
    notifier.notify(approval("queued-1"));
    notifier.notify(approval("queued-2"));
    // On this single-threaded runtime the posting task has not run yet: both are queued.
    assert_eq!(notifier.stats()[0].waiting, 2);
    let flushed = notifier.shutdown(Duration::from_secs(30)).await;
    assert_eq!(flushed, riposte_notify::Flushed::default(), "nothing left");
    let ids: Vec<serde_json::Value> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|r| r.body["action_id"].clone())
        .collect();
    assert_eq!(ids, ["queued-1", "queued-2"]);
    let stats = &notifier.stats()[0];
    assert_eq!((stats.delivered, stats.waiting), (2, 0));
    // Stopped: what comes after is not queued (and waiting for it does not hang).
    notifier.notify(approval("too-late"));
    assert_eq!(notifier.stats()[0].waiting, 0);
    notifier.idle().await;
}

#[tokio::test]
async fn a_shutdown_against_a_receiver_that_never_answers_ends_at_its_deadline() {
    let (addr, mut accepted) = silent_receiver().await;
    let (url, _rx) = receiver(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    // One webhook that never answers (its posts may take 300 s), one that does.
    let text = format!(
        "max_attempts = 1000\n{}[[webhooks]]\nname = \"answers\"\nurl = {url:?}\n",
        one_hook(&format!("http://{addr}/hook"), "timeout_secs = 300")
    );
    let notifier = Notifier::start(&config(&text, dir.path()), None).unwrap();
    for i in 0..3 {
        notifier.notify(approval(&format!("a-{i}")));
    }
    // The first is being posted to the silent one (it holds the connection).
    tokio::time::timeout(Duration::from_secs(30), accepted.recv())
        .await
        .expect("the notifier connected")
        .unwrap();
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let flushed = notifier.shutdown(deadline).await;
    let took = started.elapsed();
    assert!(
        took >= deadline && took < deadline + Duration::from_secs(5),
        "the shutdown took {took:?}"
    );
    // The one in flight and the two waiting behind it, counted under the webhook's name.
    assert_eq!(flushed.undelivered, [("test".to_owned(), 3)]);
    assert_eq!(flushed.total(), 3);
    let stats = notifier.stats();
    assert_eq!((stats[0].delivered, stats[0].waiting), (0, 0));
    assert_eq!((stats[1].name.as_str(), stats[1].delivered), ("answers", 3));
    let shown = format!("{flushed:?}");
    assert!(!shown.contains("127.0.0.1"), "no URL: {shown}");
}
