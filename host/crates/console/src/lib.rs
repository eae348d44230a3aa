//! The operator's console: server-rendered pages over the store and the audit trail
//! (overview, approvals, a Malop, the audit trail, the shadow report), for people who log
//! in with a name and a password kept by riposte (`riposte users add`).
//!
//! - **Who**: users and roles ([`riposte_domain::Role`]: viewer < approver < admin) in the
//!   store ([`riposte_store::Users`]); passwords hashed with argon2id ([`auth`]).
//! - **Sessions**: a random 256-bit token in an `HttpOnly`, `SameSite=Strict`, `Path=/`
//!   cookie (`Secure` over TLS or behind a TLS proxy), held in memory with an idle and an
//!   absolute expiry; an expired session is sent to `/login`.
//! - **Forms**: every POST but the login carries the session's CSRF token (hidden field
//!   `csrf`); without it, or with another, the answer is 403. A viewer's decision is 403.
//!   Logins are limited per source address and per user name (5 failures in 5 minutes, then
//!   429). Request bodies are bounded ([`MAX_BODY_BYTES`]).
//! - **Audit**: every console action (login, failed login, logout, approve, deny, confirm,
//!   extend, verify)
//!   is a record in the audit chain, by `console:NAME`.
//! - **Escaping**: templates (minijinja, `templates/`, embedded) escape everything they
//!   show; text a plugin chose is also clipped to one line ([`text::clip`]).
//!
//! Stable names for browser tests: the login form's `#username`, `#password` and
//! `#login`; each approval's forms `action=/approvals/{id}/approve` (button `#approve`) and
//! `action=/approvals/{id}/deny` (button `#deny`) on the page `/approvals/{id}`; the logout
//! button `#logout`; the audit page's `#verify`; on `/containment`, each row `#box-{id}`
//! with the forms `action=/containment/{id}/confirm` and `/containment/{id}/extend`
//! (field `hours`). Approve, deny, confirm and extend go through
//! `riposte_service::decisions`, as the CLI's do.

pub mod auth;
pub mod config;
mod pages;
mod serve;
mod svg;
pub mod text;

pub use config::ConsoleConfig;
pub use serve::ConsoleServer;

use auth::{LoginLimiter, Sessions};
use riposte_policy::Gate;
use riposte_service::{Auditor, OperatorConfig};
use riposte_store::Store;
use std::sync::Arc;

/// The largest request body accepted, in bytes (forms are small).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "riposte_session";

/// The console's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy could not be loaded into a gate (for budget status).
    #[error("console: building the policy gate: {0}")]
    Gate(#[from] riposte_policy::Error),
    /// A template did not compile (a bug of this build).
    #[error("console: template: {0}")]
    Template(#[from] minijinja::Error),
    /// The address could not be served, or TLS could not be set up.
    #[error("console: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key is not usable.
    #[error("console: TLS: {0}")]
    Tls(String),
    /// The configuration refuses to serve (plain HTTP off loopback).
    #[error("console: {0}")]
    Refused(String),
}

/// A clock in ms since the Unix epoch (the system clock, or a test's).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The console: its state, shared by every request (cheap to clone).
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub store: Arc<Store>,
    pub operator: Arc<OperatorConfig>,
    pub gate: Gate,
    pub auditor: Arc<Auditor>,
    pub settings: ConsoleConfig,
    pub sessions: Sessions,
    pub limiter: LoginLimiter,
    pub templates: minijinja::Environment<'static>,
    pub clock: Clock,
    /// The hash of a random password nobody knows: what a login of an unknown name is
    /// checked against, so that it takes as long as a known one.
    pub dummy_hash: String,
}

impl Console {
    /// A console over the service's store, configuration and audit trail, on the system clock.
    pub fn new(
        settings: ConsoleConfig,
        operator: Arc<OperatorConfig>,
        store: Arc<Store>,
        auditor: Arc<Auditor>,
    ) -> Result<Self, Error> {
        Self::with_clock(
            settings,
            operator,
            store,
            auditor,
            Arc::new(riposte_domain::now_ms),
        )
    }

    /// As [`Console::new`], on the clock `clock` (sessions expire and records are dated by it).
    pub fn with_clock(
        settings: ConsoleConfig,
        operator: Arc<OperatorConfig>,
        store: Arc<Store>,
        auditor: Arc<Auditor>,
        clock: Clock,
    ) -> Result<Self, Error> {
        let gate = Gate::new(&operator.policy, store.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                sessions: Sessions::new(settings.session_idle_secs, settings.session_max_secs),
                limiter: LoginLimiter::new(settings.insecure_http_behind_proxy),
                templates: pages::templates()?,
                store,
                operator,
                gate,
                auditor,
                settings,
                clock,
                dummy_hash: auth::hash_password(&auth::generate_password())
                    .map_err(|e| Error::Refused(e.to_string()))?,
            }),
        })
    }

    /// The console's routes, for serving or testing.
    pub fn router(&self) -> axum::Router {
        pages::router(self.clone())
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }
}
