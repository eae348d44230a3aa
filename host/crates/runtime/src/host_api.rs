//! The boundary between a sandboxed plugin and whatever answers its imports.
//!
//! The runtime turns every WIT import call into a call on a [`PluginHost`]. Which host
//! answers depends on the use: a recording dry-run backend for `riposte plugin run`, the
//! policy-gated Cybereason backend for the service. The runtime itself knows nothing of
//! policy, HTTP or storage.

use riposte_domain::{
    ActionRequest, CallError, Malop, MalopId, Receipt, RemediationProgress, TimestampMs,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future: the return type of [`PluginHost`]'s asynchronous methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A plugin's identity: its name and the sha256 of its component bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginIdentity {
    /// The name the operator gave the plugin.
    pub name: String,
    /// Lower-case hex sha256 of the component bytes.
    pub digest: String,
}

/// Everything a host needs to know about the invocation a call comes from.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The calling plugin.
    pub plugin: PluginIdentity,
    /// A fresh id for every invocation (one `on-malop` or `on-interval` call).
    pub invocation_id: String,
    /// The Malop the invocation is about (none for the interval hook).
    pub malop_id: Option<MalopId>,
    /// sha256 of the invocation's input (the Malop as JSON, or the interval time).
    pub input_digest: String,
    /// The operator's configuration values for this plugin.
    pub config: Arc<BTreeMap<String, String>>,
    /// The clocks the plugin sees through WASI (the host's own, or pinned for replays).
    pub clock: Clock,
}

/// The time a plugin sees through the WASI clocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "clock", content = "ms", rename_all = "kebab-case")]
pub enum Clock {
    /// The host's real wall and monotonic clocks.
    #[default]
    System,
    /// Deterministic time for replays: the wall clock starts at this instant (ms since the
    /// epoch) and the monotonic clock at zero; both advance by one microsecond per read, so
    /// the same plugin on the same input sees the same times on every run.
    Fixed(TimestampMs),
}

/// A log level of the WIT `log` interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Answers a plugin's imports. Implementations decide, execute, record and audit.
///
/// Every method receives the [`CallContext`] of the invocation, so one host serves any
/// number of plugins and invocations at once.
pub trait PluginHost: Send + Sync + 'static {
    /// Malops created or updated in `[since, until)`.
    fn list_malops<'a>(
        &'a self,
        call: &'a CallContext,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'a, Result<Vec<Malop>, CallError>>;

    /// The full detail of one Malop.
    fn get_malop<'a>(
        &'a self,
        call: &'a CallContext,
        id: MalopId,
    ) -> BoxFuture<'a, Result<Malop, CallError>>;

    /// An action the plugin asks for, with its stated reason.
    fn act<'a>(
        &'a self,
        call: &'a CallContext,
        request: ActionRequest,
        reason: String,
    ) -> BoxFuture<'a, Result<Receipt, CallError>>;

    /// Where an earlier remediation stands, by the receipt's action id.
    fn remediation_status<'a>(
        &'a self,
        call: &'a CallContext,
        action_id: String,
    ) -> BoxFuture<'a, Result<RemediationProgress, CallError>>;

    /// Reads the plugin's key-value store.
    fn kv_get(&self, call: &CallContext, key: &str) -> Option<Vec<u8>>;

    /// Writes the plugin's key-value store.
    fn kv_set(&self, call: &CallContext, key: &str, value: Vec<u8>) -> Result<(), CallError>;

    /// Deletes a key of the plugin's key-value store.
    fn kv_delete(&self, call: &CallContext, key: &str);

    /// A log line from the plugin: already counted against its output cap, cut to
    /// [`riposte_domain::bounds::MAX_LOG_BYTES`] and escaped onto one line
    /// ([`riposte_domain::bounds::log_safe`]).
    fn log(&self, call: &CallContext, level: LogLevel, message: &str);
}

impl CallContext {
    /// The context of an `on-malop` invocation: a fresh invocation id and the digest of the
    /// Malop as JSON.
    pub fn for_malop(
        plugin: PluginIdentity,
        malop: &Malop,
        config: Arc<BTreeMap<String, String>>,
    ) -> Self {
        let input = serde_json::to_vec(malop).expect("a Malop always serializes");
        Self {
            plugin,
            invocation_id: uuid::Uuid::new_v4().to_string(),
            malop_id: Some(malop.id.clone()),
            input_digest: hex::encode(Sha256::digest(&input)),
            config,
            clock: Clock::System,
        }
    }

    /// The context of an `on-interval` invocation at `now` (ms).
    pub fn for_interval(
        plugin: PluginIdentity,
        now: TimestampMs,
        config: Arc<BTreeMap<String, String>>,
    ) -> Self {
        Self {
            plugin,
            invocation_id: uuid::Uuid::new_v4().to_string(),
            malop_id: None,
            input_digest: hex::encode(Sha256::digest(now.to_string().as_bytes())),
            config,
            clock: Clock::System,
        }
    }

    /// The same context with the plugin's WASI clocks set to `clock` (e.g. pinned for a
    /// deterministic replay).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }
}
