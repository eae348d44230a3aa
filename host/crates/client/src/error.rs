//! The client's one error type. Messages say what went wrong and where, and never carry a secret.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to a Cybereason server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot be used (bad base URL, unreadable credentials...).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The extra CA file could not be read or parsed.
    #[error("cannot load CA file {path}: {reason}")]
    CaFile {
        /// The file given in the configuration.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The server answered the login with its login page again: wrong username or password.
    #[error("login failed for user {username:?}: {reason}")]
    LoginFailed {
        /// The user that tried to log in (never the password).
        username: String,
        /// What the server did.
        reason: String,
    },
    /// The server asks for a two-factor code, which an unattended host cannot give.
    #[error(
        "login for user {username:?} requires two-factor authentication; use an API user without 2FA"
    )]
    TwoFactorRequired {
        /// The user that tried to log in.
        username: String,
    },
    /// The server says the password has expired and must be changed.
    #[error("the password of user {username:?} has expired; change it in the console")]
    PasswordExpired {
        /// The user that tried to log in.
        username: String,
    },
    /// The session was refused again right after a fresh login: nothing was carried out.
    /// Logins then pause as after a refused login (the API user may log in but not use the
    /// API, and logging in twice for every call could lock the account).
    #[error("{endpoint}: the server rejected a freshly created session (login page again){held}")]
    SessionRejected {
        /// The endpoint called.
        endpoint: String,
        /// Empty, or where the session was rejected and how long no login is tried
        /// (` at POST /rest/...; no login is tried for 60 s`), for a call refused while
        /// logins are held.
        held: String,
    },
    /// No answer within the configured timeout (after `attempts` tries).
    #[error("{endpoint}: timed out after {timeout:?} ({attempts} attempt(s))")]
    Timeout {
        /// The endpoint called.
        endpoint: String,
        /// The per-request timeout.
        timeout: Duration,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// The server's TLS certificate was refused: nothing was sent, and trying again cannot
    /// help until the configuration or the certificate changes.
    #[error("{endpoint}: TLS certificate refused: {problem}; to fix: {fix}")]
    Certificate {
        /// The endpoint called.
        endpoint: String,
        /// What is wrong with the certificate.
        problem: String,
        /// What the operator can do about it.
        fix: String,
    },
    /// The server could not be reached (the request was not sent).
    #[error("{endpoint}: cannot connect ({attempts} attempt(s)): {reason}")]
    Connect {
        /// The endpoint called.
        endpoint: String,
        /// How many times a connection was tried.
        attempts: u32,
        /// The transport's explanation.
        reason: String,
    },
    /// The request failed in transport after it may have been sent.
    #[error("{endpoint}: transport error ({attempts} attempt(s)): {reason}")]
    Transport {
        /// The endpoint called.
        endpoint: String,
        /// How many times the request was sent.
        attempts: u32,
        /// The transport's explanation.
        reason: String,
    },
    /// The server throttled the call (HTTP 429) and retries did not help or were not allowed.
    #[error("{endpoint}: throttled by the server (HTTP 429, {attempts} attempt(s))")]
    Throttled {
        /// The endpoint called.
        endpoint: String,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// An unexpected HTTP status.
    #[error("{endpoint}: HTTP {status} ({attempts} attempt(s)); body starts: {excerpt:?}")]
    Http {
        /// The endpoint called.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// How many times the request was sent.
        attempts: u32,
        /// The start of the body (secrets scrubbed).
        excerpt: String,
    },
    /// The server refused the request before carrying it out (§6): 400 (a bad request or
    /// query), 403 (the API user lacks the role), 412 (access denied). Sending it again
    /// would be refused the same way.
    #[error("{endpoint}: refused by the server, HTTP {status} ({}); body starts: {excerpt:?}", refusal(*.status).unwrap_or("refused"))]
    Refused {
        /// The endpoint called.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the body (secrets scrubbed).
        excerpt: String,
    },
    /// An isolation named no sensor the server knows (HTTP 400 `NO_MATCHING_SENSORS`).
    #[error("{endpoint}: no sensor matches the given pylumIds (NO_MATCHING_SENSORS)")]
    NoMatchingSensors {
        /// The endpoint called.
        endpoint: String,
    },
    /// The server answered HTTP 200 with a body that reports failure.
    #[error("{endpoint}: the server reported {status}: {message}")]
    Api {
        /// The endpoint called.
        endpoint: String,
        /// The failure status the server gave (`FAILURE`, an `outcome`, `errorMessage`...).
        status: String,
        /// The server's message.
        message: String,
    },
    /// A remediation item failed on the server.
    #[error("{endpoint}: remediation {remediation_id} failed on target {target}: {message}")]
    RemediationFailed {
        /// The endpoint called.
        endpoint: String,
        /// The server's remediation id.
        remediation_id: String,
        /// The target element guid of the failed item.
        target: String,
        /// The server's error message.
        message: String,
        /// Every failed item of the reply (the server's per-target verdicts).
        failed: Vec<super::RemediationEntry>,
    },
    /// The request could not even be built, so it was certainly not sent.
    #[error("{endpoint}: the request could not be built, so it was not sent: {reason}")]
    NotSent {
        /// The endpoint called.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The body could not be understood.
    #[error("{endpoint}: unreadable response: {reason}; body starts: {excerpt:?}")]
    Parse {
        /// The endpoint called.
        endpoint: String,
        /// What is wrong with the body.
        reason: String,
        /// The start of the body (secrets scrubbed).
        excerpt: String,
    },
    /// A state-changing call may or may not have been carried out; it was NOT re-sent.
    /// Check the server's state (e.g. `Client::remediation_status`) before trying again.
    #[error("{endpoint}: outcome unknown, not re-sent; check the server's state first: {reason}")]
    OutcomeUnknown {
        /// The endpoint called.
        endpoint: String,
        /// What happened (timeout, connection reset, HTTP 5xx, unreadable reply).
        reason: String,
    },
    /// The server does not know the requested object.
    #[error("{what} not found on the server")]
    NotFound {
        /// What was looked for.
        what: String,
    },
}

impl Error {
    /// Whether the server certainly did not carry out the request (safe to send again later).
    pub fn certainly_not_done(&self) -> bool {
        self.held_back()
            || matches!(
                self,
                Error::Connect { .. }
                    | Error::Certificate { .. }
                    | Error::Config(_)
                    | Error::CaFile { .. }
                    | Error::NoMatchingSensors { .. }
                    | Error::Refused { .. }
                    | Error::NotSent { .. }
            )
    }

    /// Whether the call was held back by no fault of its own: the server throttled it, or
    /// the host could not log in (a refused login, a session rejected at once, a second
    /// factor, an expired password). Nothing was carried out, and the same call may go
    /// through once the server or the credentials allow.
    pub fn held_back(&self) -> bool {
        matches!(
            self,
            Error::Throttled { .. }
                | Error::LoginFailed { .. }
                | Error::SessionRejected { .. }
                | Error::TwoFactorRequired { .. }
                | Error::PasswordExpired { .. }
        )
    }

    /// Whether the server refused a query as such (a filter it does not take): HTTP 400
    /// and the like, or HTTP 200 with `status: FAILURE`, as some servers answer a bad query.
    pub fn refused_query(&self) -> bool {
        matches!(self, Error::Refused { .. })
            || matches!(self, Error::Api { status, .. } if status.eq_ignore_ascii_case("FAILURE"))
    }

    /// Whether the server answered that a query matched too much to answer at all: the
    /// statuses that name a limit, not a fault (`QUERY_LIMIT_CROSSED`, `TIMEOUT_ERROR`, §5.3
    /// of the notes).
    pub fn query_too_large(&self) -> bool {
        matches!(self, Error::Api { status, .. }
            if status.eq_ignore_ascii_case("QUERY_LIMIT_CROSSED") || status.eq_ignore_ascii_case("TIMEOUT_ERROR"))
    }

    /// Whether the action certainly had no effect and sending it again would fail the same
    /// way: the server rejected every target as unknown (`NO_MATCHING_SENSORS`) or refused
    /// the request (400, 403, 412), a target could not be resolved (no sensor for a
    /// machine), or the request could not be built.
    pub fn rejected_for_good(&self) -> bool {
        matches!(
            self,
            Error::NoMatchingSensors { .. }
                | Error::Refused { .. }
                | Error::NotFound { .. }
                | Error::NotSent { .. }
        )
    }
}

/// What an HTTP status with which a server refuses a request before carrying it out (§6)
/// means; `None` for any other status.
pub(crate) fn refusal(status: u16) -> Option<&'static str> {
    match status {
        400 => Some("a bad request"),
        403 => Some("the API user lacks the role this call needs"),
        412 => Some("access denied to the API user"),
        _ => None,
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a plugin sees of a failed query: "not found" stays "not found", anything else is a
/// server error carrying the (secret-free) message.
impl From<Error> for riposte_domain::CallError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound { what } => Self::NotFound(what),
            other => Self::ServerError(other.to_string()),
        }
    }
}
