//! Form login at `/login.html` and the `JSESSIONID` session it yields.

use super::Client;
use super::error::{Error, Result};
use super::http::{TryError, body_start};
use super::secret::Secret;
use backon::RetryableWithContext as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION, SET_COOKIE};
use std::time::{Duration, Instant};

/// The most of a login reply read: the login and two-factor pages' markers are near its
/// start, and a successful login's page is not used.
const LOGIN_REPLY_BYTES: usize = 1024 * 1024;

/// How long no login is tried after the server refused one (wrong password, two-factor,
/// expired password), doubled for each refusal in a row up to [`LOGIN_HOLD_MAX`]: a cycle's
/// calls, and each cycle, would otherwise send the refused password again and again, and
/// lock the account (the usual lockout counts a handful of failures).
const LOGIN_HOLD_FIRST: Duration = Duration::from_secs(60);
/// The longest pause between two refused logins.
const LOGIN_HOLD_MAX: Duration = Duration::from_secs(15 * 60);

/// A login the server refused: what it said, and until when no other is tried.
pub(crate) struct LoginHold {
    until: Instant,
    pause: Duration,
    refusal: Error,
}

/// A copy of a login refusal (the errors a login repeated with the same credentials gets
/// again), `None` for any other error.
fn refusal_copy(error: &Error, wait: Option<Duration>) -> Option<Error> {
    Some(match error {
        Error::LoginFailed { username, reason } => Error::LoginFailed {
            username: username.clone(),
            reason: match wait {
                Some(wait) => format!(
                    "{reason}; not tried again for {} s, so that repeated failures do not lock the account",
                    wait.as_secs().max(1)
                ),
                None => reason.clone(),
            },
        },
        Error::TwoFactorRequired { username } => Error::TwoFactorRequired {
            username: username.clone(),
        },
        Error::PasswordExpired { username } => Error::PasswordExpired {
            username: username.clone(),
        },
        Error::SessionRejected { endpoint, .. } => match wait {
            // Held: this call was not sent; the login is what waits.
            Some(wait) => Error::SessionRejected {
                endpoint: "POST /login.html".to_owned(),
                held: format!(
                    " at {endpoint}; no login is tried for {} s",
                    wait.as_secs().max(1)
                ),
            },
            None => Error::SessionRejected {
                endpoint: endpoint.clone(),
                held: String::new(),
            },
        },
        _ => return None,
    })
}

/// A live session: the cookie and a generation number that tells re-logins apart.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) cookie: Secret,
    pub(crate) generation: u64,
}

/// Whether an HTML body is the Cybereason login page: its title (`Cybereason | Login`,
/// however it is spaced or cased), its Angular `app-login` element, or a password field (a
/// login form of any server version).
pub fn is_login_page(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let login_title = html_title(&text).is_some_and(|title| {
        let words: Vec<&str> = title.split_whitespace().collect();
        words == ["cybereason", "|", "login"]
    });
    login_title
        || text.contains("<app-login")
        || ["type=\"password\"", "type='password'", "type=password"]
            .iter()
            .any(|field| text.contains(field))
}

/// The text of the first `<title>` element of (lowercased) HTML.
fn html_title(text: &str) -> Option<&str> {
    let open = text.find("<title")?;
    let start = open + text[open..].find('>')? + 1;
    let end = start + text[start..].find("</title")?;
    Some(&text[start..end])
}

/// Whether a body asks for a two-factor code.
pub fn is_two_factor_page(body: &[u8]) -> bool {
    String::from_utf8_lossy(body).contains("Two factor authentication")
}

/// The `JSESSIONID` value among the `Set-Cookie` headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<Secret> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.trim().strip_prefix("JSESSIONID="))
        .map(|rest| rest.split(';').next().unwrap_or("").trim())
        .find(|id| !id.is_empty())
        .map(Secret::new)
}

impl Client {
    /// The current session, logging in first if there is none.
    pub(crate) async fn session(&self) -> Result<Session> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let s = self.new_session().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    /// Replaces the session `stale`; if another task already did, uses its session.
    pub(crate) async fn relogin(&self, stale: u64) -> Result<Session> {
        let mut guard = self.session.lock().await;
        if let Some(s) = guard.as_ref().filter(|s| s.generation != stale) {
            return Ok(s.clone());
        }
        *guard = None;
        let s = self.new_session().await?;
        *guard = Some(s.clone());
        Ok(s)
    }

    async fn new_session(&self) -> Result<Session> {
        let cookie = self.login().await?;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(user = %self.credentials.username, "logged in to the Cybereason server");
        Ok(Session { cookie, generation })
    }

    /// Logs in (retrying transport errors, 429 and 5xx) and checks the reply; while a
    /// refused login's hold lasts ([`LOGIN_HOLD_FIRST`]), answers its refusal again without
    /// asking the server.
    async fn login(&self) -> Result<Secret> {
        if let Some(refused) = self.held_login() {
            return Err(refused);
        }
        let result = self.login_at_server().await;
        self.note_login(&result);
        result
    }

    fn held_login(&self) -> Option<Error> {
        let hold = self.login_hold.lock().unwrap_or_else(|p| p.into_inner());
        let hold = hold.as_ref()?;
        let left = hold.until.checked_duration_since(Instant::now())?;
        refusal_copy(&hold.refusal, Some(left))
    }

    /// A refused login holds the next ones. One that succeeds keeps the last hold's length
    /// (expired) until a call goes through ([`Client::calls_go_through`]): a server that lets
    /// the user log in but rejects every session must meet longer holds each time, not the
    /// first one again.
    fn note_login(&self, result: &Result<Secret>) {
        if let Err(error) = result {
            self.hold_logins(error);
        }
    }

    /// A call went through: the server takes this user's sessions, and the next refusal
    /// starts the shortest hold again.
    pub(crate) fn calls_go_through(&self) {
        let mut hold = self.login_hold.lock().unwrap_or_else(|p| p.into_inner());
        if hold.is_some() {
            *hold = None;
        }
    }

    /// Drops the session `rejected` (refused right after its login) and holds logins as
    /// after a refused login, so that the calls that follow fail at once instead of logging
    /// in twice each. A rejection of a session another call already replaced or dropped
    /// holds nothing (that call did, or its new session is not known to be refused).
    pub(crate) async fn reject_session(&self, rejected: u64, error: &Error) {
        let mut guard = self.session.lock().await;
        if guard.as_ref().is_some_and(|s| s.generation == rejected) {
            *guard = None;
            self.hold_logins(error);
        }
    }

    /// Starts the login hold for `error` if it is a refusal, twice as long as the last one
    /// when the refusal came again after it. A hold still running is kept as it is: calls
    /// rejected together (one session, several calls in flight) are one refusal.
    fn hold_logins(&self, error: &Error) {
        let Some(refusal) = refusal_copy(error, None) else {
            return;
        };
        let mut hold = self.login_hold.lock().unwrap_or_else(|p| p.into_inner());
        let pause = match hold.as_ref() {
            Some(h) if h.until > Instant::now() => return,
            Some(h) => (h.pause * 2).min(LOGIN_HOLD_MAX),
            None => LOGIN_HOLD_FIRST,
        };
        tracing::error!(user = %self.credentials.username, "the server refused the login ({error}); no login is tried for {} s", pause.as_secs());
        *hold = Some(LoginHold {
            until: Instant::now() + pause,
            pause,
            refusal,
        });
    }

    async fn login_at_server(&self) -> Result<Secret> {
        let endpoint = "POST /login.html";
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", &self.credentials.username)
            .append_pair("password", self.credentials.password.expose())
            .finish();
        let (_, result) = (|attempt: u32| self.login_once(endpoint, &form, attempt + 1))
            .retry(self.retry.backoff())
            .context(0)
            .when(TryError::is_retry)
            .notify(|e: &TryError, delay| self.log_retry(endpoint, e, delay))
            .await;
        result.map_err(TryError::into_error)
    }

    /// One try of the login form: a 429, a 5xx or a transport error (but a refused
    /// certificate) may be tried again; any other reply is judged.
    async fn login_once(
        &self,
        endpoint: &str,
        form: &str,
        attempt: u32,
    ) -> (u32, std::result::Result<Secret, TryError>) {
        let sent = self
            .http
            .post(format!("{}/login.html", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form.to_owned())
            .send()
            .await;
        let err = match sent {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                // Judged by its start (the login page's markers, an error's excerpt).
                match body_start(resp, LOGIN_REPLY_BYTES).await {
                    Ok(body) if !retryable_status(status) => {
                        let judged = self.judge_login(status, &headers, &body);
                        return (attempt, judged.map_err(TryError::Final));
                    }
                    Ok(body) => self.http_error(endpoint, status, attempt, &body),
                    Err(e) => self.transport_error(endpoint, &e, attempt),
                }
            }
            Err(e) => self.transport_error(endpoint, &e, attempt),
        };
        let err = match err {
            Error::Certificate { .. } => TryError::Final(err),
            _ => TryError::Retry(err),
        };
        (attempt, Err(err))
    }

    fn judge_login(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Secret> {
        let username = self.credentials.username.clone();
        let cookie = session_cookie(headers);
        if status.is_redirection() {
            let location = headers
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("");
            if location.contains("error") {
                return Err(Error::LoginFailed {
                    username,
                    reason: "the server redirected to its error page (wrong credentials?)".into(),
                });
            }
            if location.contains("reset") {
                return Err(Error::PasswordExpired { username });
            }
            if location.to_ascii_lowercase().contains("login.html") {
                return Err(Error::LoginFailed {
                    username,
                    reason:
                        "the server redirected back to its login page (wrong username or password?)"
                            .into(),
                });
            }
        } else if is_two_factor_page(body) {
            return Err(Error::TwoFactorRequired { username });
        } else if is_login_page(body) {
            return Err(Error::LoginFailed {
                username,
                reason:
                    "the server answered with its login page again (wrong username or password)"
                        .into(),
            });
        } else if !status.is_success() {
            return Err(self.http_error("POST /login.html", status, 1, body));
        }
        cookie.ok_or_else(|| Error::LoginFailed {
            username: self.credentials.username.clone(),
            reason: format!("HTTP {} without a JSESSIONID cookie", status.as_u16()),
        })
    }
}

pub(crate) fn retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

#[cfg(test)]
mod tests {
    use super::is_login_page;

    #[test]
    fn login_pages_are_known_however_they_are_spaced() {
        for page in [
            "<html><head><title>Cybereason | Login</title></head></html>",
            "<html><head><title>\n   Cybereason |   Login\n</title></head></html>",
            "<html><head><TITLE lang=en>CYBEREASON | LOGIN</TITLE></head></html>",
            "<html><body><app-login></app-login></body></html>",
            "<html><body><form><input name=\"password\" type=\"password\"></form></body></html>",
            "<html><body><form><input type=password name=p></form></body></html>",
        ] {
            assert!(is_login_page(page.as_bytes()), "{page}");
        }
        for page in [
            "<html><head><title>502 Bad Gateway</title></head></html>",
            "<html><head><title>Cybereason | Investigation</title></head></html>",
            "<html><head><title>Cybereason | Login",
        ] {
            assert!(!is_login_page(page.as_bytes()), "{page}");
        }
    }
}
