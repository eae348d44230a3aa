//! The [`Notifier`]: one bounded queue and one posting task per webhook.
//!
//! [`Notifier::notify`] renders the event, puts it on the queue of every webhook that wants
//! it and returns: it never waits for the network, never fails, and never blocks on anything
//! but a short lock. Past `queue_size` the oldest waiting notification of that webhook is
//! dropped, counted and logged. Each webhook's task posts its queue in order, retrying
//! connection errors, timeouts, 429 and 5xx with exponential backoff and jitter (`backon`);
//! another answer (a 4xx, a redirect) is not retried. [`Notifier::shutdown`] gives the
//! queues a bounded time to empty when the process stops, then drops and counts the rest.

use crate::config::{Format, NotificationsConfig, WebhookConfig};
use crate::event::{Event, Rendered, render};
use backon::Retryable as _;
use riposte_domain::Secret;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP client of a webhook could not be built (TLS set-up).
    #[error("webhook `{webhook}`: cannot build its HTTP client: {reason}")]
    Client {
        /// The webhook's name.
        webhook: String,
        /// Why.
        reason: String,
    },
    /// There is no tokio runtime to run the posting tasks on.
    #[error("notifications need a tokio runtime to post from")]
    NoRuntime,
}

/// What one webhook has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// The webhook's name.
    pub name: String,
    /// Where it posts (`scheme://host[:port]`).
    pub target: String,
    /// Notifications waiting now.
    pub waiting: u64,
    /// Notifications posted and accepted (2xx).
    pub delivered: u64,
    /// Notifications given up on (refused, or out of tries).
    pub failed: u64,
    /// Notifications dropped from a full queue.
    pub dropped: u64,
    /// Retries made.
    pub retries: u64,
}

/// What a stopping notifier could not deliver by its deadline ([`Notifier::shutdown`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Per webhook name, the notifications still waiting or being posted at the deadline,
    /// and dropped then; only webhooks that had some. Empty: everything was settled in time.
    pub undelivered: Vec<(String, u64)>,
}

impl Flushed {
    /// The notifications dropped at the deadline, over every webhook.
    pub fn total(&self) -> u64 {
        self.undelivered.iter().map(|(_, n)| n).sum()
    }
}

/// Reads what each webhook of a notifier has done ([`Notifier::stats_reader`]), without
/// keeping its posting tasks alive.
#[derive(Clone)]
pub struct StatsReader {
    hooks: Vec<Arc<Hook>>,
}

impl std::fmt::Debug for StatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsReader")
            .field("webhooks", &self.hooks.len())
            .finish()
    }
}

impl StatsReader {
    /// What each webhook has done so far, in the configuration's order.
    pub fn read(&self) -> Vec<WebhookStats> {
        self.hooks.iter().map(|h| h.stats()).collect()
    }
}

/// Sends notifications to the configured webhooks without ever holding up its caller.
/// Cheap to clone (all clones share the queues); the posting tasks end when the last clone
/// is dropped (what is still queued then is not sent) or at [`Notifier::shutdown`].
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("webhooks", &self.shared.hooks.len())
            .finish()
    }
}

struct Shared {
    host: String,
    /// The console's public address, once known (links point under it).
    console: std::sync::OnceLock<url::Url>,
    quiet: Duration,
    /// When each repeating event (a pause, a budget trip) was last sent.
    recent: Mutex<HashMap<String, Instant>>,
    hooks: Vec<Arc<Hook>>,
    /// Signalled when a webhook's queue settles an item (for [`Notifier::idle`]).
    settled: Arc<tokio::sync::Notify>,
    /// The posting tasks, until [`Notifier::shutdown`] takes them.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Set by [`Notifier::shutdown`]: nothing more is queued.
    stopped: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(|p| p.into_inner());
        for task in tasks.iter() {
            task.abort();
        }
    }
}

/// The most repeating-event keys remembered; older ones are forgotten first.
const MAX_RECENT: usize = 1_024;

/// One webhook: its settings, its queue and its counters.
struct Hook {
    config: WebhookConfig,
    capacity: usize,
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
}

#[derive(Default)]
struct Queue {
    bodies: VecDeque<Vec<u8>>,
    /// A body is being posted.
    busy: bool,
}

impl Notifier {
    /// A notifier that sends nothing (no webhook configured).
    pub fn disabled() -> Self {
        Self {
            shared: Arc::new(Shared {
                host: String::new(),
                console: std::sync::OnceLock::new(),
                quiet: Duration::ZERO,
                recent: Mutex::default(),
                hooks: Vec::new(),
                settled: Arc::default(),
                tasks: Mutex::default(),
                stopped: AtomicBool::new(false),
            }),
        }
    }

    /// Starts a posting task per webhook of `config` on the current tokio runtime. Links
    /// point under `console` (the console's public address) when it is known.
    pub fn start(config: &NotificationsConfig, console: Option<url::Url>) -> Result<Self, Error> {
        if config.webhooks.is_empty() {
            return Ok(Self::disabled());
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let settled = Arc::new(tokio::sync::Notify::new());
        let backoff = backoff(config);
        let mut hooks = Vec::new();
        let mut tasks = Vec::new();
        for webhook in &config.webhooks {
            let client = reqwest::Client::builder()
                .timeout(webhook.timeout)
                .connect_timeout(webhook.timeout)
                // A redirect could carry the token elsewhere: answered as a failure.
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("riposte/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::Client {
                    webhook: webhook.name.clone(),
                    reason: e.without_url().to_string(),
                })?;
            let hook = Arc::new(Hook {
                config: webhook.clone(),
                capacity: config.queue_size.max(1),
                queue: Mutex::default(),
                wake: tokio::sync::Notify::new(),
                delivered: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                retries: AtomicU64::new(0),
            });
            tasks.push(runtime.spawn(post_loop(hook.clone(), client, backoff, settled.clone())));
            hooks.push(hook);
        }
        let host = config
            .host
            .clone()
            .or_else(riposte_domain::host_name)
            .unwrap_or_else(|| "riposte".into());
        Ok(Self {
            shared: Arc::new(Shared {
                host,
                console: console.map(std::sync::OnceLock::from).unwrap_or_default(),
                quiet: config.quiet,
                recent: Mutex::default(),
                hooks,
                settled,
                tasks: Mutex::new(tasks),
                stopped: AtomicBool::new(false),
            }),
        })
    }

    /// From now on, links point under `console` (the console's public address, known once
    /// the console is configured). Set once: a second address is ignored.
    pub fn link_to(&self, console: url::Url) {
        let _ = self.shared.console.set(console);
    }

    /// Queues `event` for every webhook that wants it, and returns at once. Never fails: a
    /// full queue drops its oldest notification (counted in [`Notifier::stats`], logged). A
    /// pause of the same plugin, or a trip of the same budget, is sent once per quiet
    /// period.
    pub fn notify(&self, event: Event) {
        let shared = &self.shared;
        let kind = event.kind();
        let wanted: Vec<&Arc<Hook>> = shared
            .hooks
            .iter()
            .filter(|h| h.config.events.contains(&kind))
            .collect();
        if wanted.is_empty()
            || shared.stopped.load(Ordering::Acquire)
            || !shared.first_in_quiet_period(&event)
        {
            return;
        }
        let rendered = render(
            &event,
            chrono::Utc::now().timestamp_millis(),
            &shared.host,
            shared.console.get(),
        );
        for hook in wanted {
            hook.enqueue(&rendered);
        }
    }

    /// What each webhook has done so far.
    pub fn stats(&self) -> Vec<WebhookStats> {
        self.stats_reader().read()
    }

    /// A reader of [`Notifier::stats`] for whoever reports them (the metrics endpoint); it
    /// does not keep the posting tasks running.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader {
            hooks: self.shared.hooks.clone(),
        }
    }

    /// For a stopping process: waits until every queued notification is settled (as
    /// [`Notifier::idle`]), but at most `within`; then stops posting, for every clone. What
    /// was still waiting or being posted then is dropped, returned and logged as a count
    /// per webhook name (never its URL). Notifications sent after it are not posted.
    pub async fn shutdown(&self, within: Duration) -> Flushed {
        let settled = tokio::time::timeout(within, self.idle()).await.is_ok();
        self.shared.stopped.store(true, Ordering::Release);
        let tasks = std::mem::take(&mut *self.shared.lock_tasks());
        for task in &tasks {
            task.abort();
        }
        // An aborted task ends at its next await (a post in flight is cut off there): once
        // they have, no count below moves.
        for task in tasks {
            let _ = task.await;
        }
        let mut flushed = Flushed::default();
        for hook in &self.shared.hooks {
            let left = {
                let mut queue = hook.lock();
                let left = queue.bodies.len() as u64 + u64::from(queue.busy);
                queue.bodies.clear();
                queue.busy = false;
                left
            };
            if left > 0 {
                tracing::warn!(
                    webhook = %hook.config.name,
                    undelivered = left,
                    "stopping: {left} notification(s) not delivered within {within:?}; dropped"
                );
                flushed.undelivered.push((hook.config.name.clone(), left));
            }
        }
        if settled && flushed.undelivered.is_empty() && !self.shared.hooks.is_empty() {
            tracing::info!("stopping: every notification was settled");
        }
        flushed
    }

    /// Waits until every queue is empty and no post is under way (each notification
    /// delivered, given up on or dropped): for a shutdown that flushes (under a timeout of
    /// the caller's), and for tests.
    pub async fn idle(&self) {
        loop {
            let settled = self.shared.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.shared.hooks.iter().all(|h| h.is_idle()) {
                return;
            }
            settled.await;
        }
    }
}

impl Shared {
    fn lock_tasks(&self) -> MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `event` is not a repeat of one sent within the quiet period (and if so,
    /// remembers it as sent now).
    fn first_in_quiet_period(&self, event: &Event) -> bool {
        let Some(key) = event.repeat_key() else {
            return true;
        };
        let now = Instant::now();
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent
            .get(&key)
            .is_some_and(|last| now.duration_since(*last) < self.quiet)
        {
            tracing::debug!(event = %event.kind(), "a repeat within the quiet period: not sent");
            return false;
        }
        if recent.len() >= MAX_RECENT {
            recent.retain(|_, last| now.duration_since(*last) < self.quiet);
            if recent.len() >= MAX_RECENT
                && let Some(oldest) = recent
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
            {
                recent.remove(&oldest);
            }
        }
        recent.insert(key, now);
        true
    }
}

impl Hook {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> WebhookStats {
        WebhookStats {
            name: self.config.name.clone(),
            target: self.config.target.clone(),
            waiting: self.lock().bodies.len() as u64,
            delivered: self.delivered.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    fn is_idle(&self) -> bool {
        let queue = self.lock();
        queue.bodies.is_empty() && !queue.busy
    }

    fn enqueue(&self, rendered: &Rendered) {
        let body = match self.config.format {
            Format::Json => &rendered.json,
            Format::Slack => &rendered.slack,
        };
        let body = serde_json::to_vec(body).unwrap_or_default();
        let dropped = {
            let mut queue = self.lock();
            queue.bodies.push_back(body);
            (queue.bodies.len() > self.capacity).then(|| queue.bodies.pop_front())
        };
        if dropped.is_some() {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // The first drop and every hundredth after: a flood does not flood the log.
            if total == 1 || total.is_multiple_of(100) {
                tracing::warn!(
                    webhook = %self.config.name,
                    target = %self.config.target,
                    dropped = total,
                    "notification queue full ({} waiting): dropped the oldest notification",
                    self.capacity
                );
            }
        }
        self.wake.notify_one();
    }

    /// The next body to post, marking the queue busy; `None` when it is empty.
    fn next(&self) -> Option<Vec<u8>> {
        let mut queue = self.lock();
        let body = queue.bodies.pop_front();
        queue.busy = body.is_some();
        body
    }

    fn done(&self, settled: &tokio::sync::Notify) {
        self.lock().busy = false;
        settled.notify_waiters();
    }
}

/// The delays between tries of one notification.
fn backoff(config: &NotificationsConfig) -> backon::ExponentialBuilder {
    // backon's jitter adds up to the delay itself on top of it: halving the bounds keeps
    // each pause within [d/2, d] of the documented doubling (as the client's retries do).
    let max = config.max_retry / 2;
    backon::ExponentialBuilder::default()
        .with_min_delay((config.first_retry / 2).min(max))
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .with_max_times(config.max_attempts.max(1) as usize - 1)
}

/// Posts `hook`'s queue, one body at a time, for as long as the notifier lives.
async fn post_loop(
    hook: Arc<Hook>,
    client: reqwest::Client,
    backoff: backon::ExponentialBuilder,
    settled: Arc<tokio::sync::Notify>,
) {
    let name = hook.config.name.as_str();
    let target = hook.config.target.as_str();
    loop {
        let Some(body) = hook.next() else {
            hook.wake.notified().await;
            continue;
        };
        let post = || post(&client, &hook.config.url, hook.config.token.as_ref(), &body);
        let result = post
            .retry(backoff)
            .when(PostError::is_transient)
            .notify(|error, delay| {
                hook.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(webhook = name, target, %error, ?delay, "notification not delivered; retrying");
            })
            .await;
        match result {
            Ok(()) => {
                hook.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                hook.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(webhook = name, target, %error, "notification given up");
            }
        }
        hook.done(&settled);
    }
}

/// Why one post did not deliver. Never holds the URL (it may be a secret).
#[derive(Debug, thiserror::Error)]
enum PostError {
    /// No answer: connection refused or reset, a timeout, TLS.
    #[error("no answer: {0}")]
    Transport(String),
    /// An answer that is not a success.
    #[error("answered HTTP {0}")]
    Status(u16),
}

impl PostError {
    /// Connection errors, timeouts, 429 and 5xx: worth another try.
    fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status(code) => *code == 429 || *code >= 500,
        }
    }
}

async fn post(
    client: &reqwest::Client,
    url: &Secret,
    token: Option<&Secret>,
    body: &[u8],
) -> Result<(), PostError> {
    let mut request = client
        .post(url.expose())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(token) = token {
        request = request.bearer_auth(token.expose());
    }
    let response = request
        .send()
        .await
        .map_err(|e| PostError::Transport(transport_error(e)))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(PostError::Status(status.as_u16()))
    }
}

/// A transport error in words, with its causes (`error sending request: ...: Connection
/// refused`), without the URL reqwest names in its own text (it may be a secret).
fn transport_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    riposte_domain::bounds::log_safe(&text, 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_transport_error_says_why_without_the_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let url = Secret::new(format!("http://{addr}/services/PATHSECRET?k=QUERYSECRET"));
        let client = reqwest::Client::new();
        let error = post(&client, &url, None, b"{}").await.unwrap_err();
        assert!(error.is_transient(), "{error}");
        let text = error.to_string();
        assert!(!text.contains("SECRET"), "{text}");
        assert!(
            text.to_lowercase().contains("refused"),
            "the cause is said: {text}"
        );
    }
}
