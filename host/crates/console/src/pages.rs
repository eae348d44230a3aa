//! The routes: login and logout, and the pages.

use crate::auth::{self, constant_time_eq};
use crate::text::{clip, machine, when, would};
use crate::{Console, Inner, MAX_BODY_BYTES, SESSION_COOKIE, svg};
use axum::Router;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, Form, FromRequest, Path, Query, Request, State,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use minijinja::context;
use riposte_audit::{Call, DecisionKind, Entry, Redacted};
use riposte_domain::{ActionRequest, MalopId, Operator, PluginName, Role, Sha256Digest, UserName};
use riposte_policy::{BudgetStatus, Mode};
use riposte_service::decisions::{self, TimeBoxChange, Verdict};
use riposte_store::prelude::*;
use riposte_store::{
    ActionFilter, ActionId, ActionRecord, ActionState, HOUR_MS, PendingApproval, PluginActivity,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

/// Characters of plugin-chosen text shown in a table cell.
const CELL: usize = 80;
/// Characters of plugin-chosen text shown on a detail page.
const DETAIL: usize = 400;
/// Audit records per page, at most.
const AUDIT_PAGE: usize = 200;
/// Actions read for a chart or a report, at most.
const ACTIONS_READ: u32 = 5_000;

pub(crate) fn templates() -> Result<minijinja::Environment<'static>, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    // Auto-escaping for .html (minijinja's default), and undefined values are mistakes.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, source) in [
        ("base.html", include_str!("../templates/base.html")),
        ("login.html", include_str!("../templates/login.html")),
        ("overview.html", include_str!("../templates/overview.html")),
        (
            "approvals.html",
            include_str!("../templates/approvals.html"),
        ),
        ("approval.html", include_str!("../templates/approval.html")),
        (
            "approval_evidence.html",
            include_str!("../templates/approval_evidence.html"),
        ),
        ("malop.html", include_str!("../templates/malop.html")),
        ("audit.html", include_str!("../templates/audit.html")),
        ("shadow.html", include_str!("../templates/shadow.html")),
        ("message.html", include_str!("../templates/message.html")),
        (
            "containment.html",
            include_str!("../templates/containment.html"),
        ),
    ] {
        env.add_template(name, source)?;
    }
    Ok(env)
}

pub(crate) fn router(console: Console) -> Router {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/", get(overview))
        .route("/approvals", get(approvals))
        .route("/approvals/{id}", get(approval))
        .route("/approvals/{id}/{verb}", post(decide_route))
        .route("/containment", get(containment))
        .route("/containment/{id}/{verb}", post(change_containment))
        .route("/malops/{id}", get(malop))
        .route("/audit", get(audit))
        .route("/audit/verify", post(verify))
        .route("/shadow", get(shadow))
        .route("/style.css", get(style))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../templates/style.css"),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Rendering, errors, the blocking pool.

/// A page that could not be made: its status and a message for the person.
pub(crate) struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.0,
            Html(format!(
                "<!doctype html><title>{0}</title><p>{1}</p><p><a href=\"/\">back</a></p>",
                self.0,
                minijinja::HtmlEscape(&self.1)
            )),
        )
            .into_response()
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Failure {
    tracing::error!("console: {what}: {e}");
    Failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{what} failed; the service log says why"),
    )
}

type Page = Result<Response, Failure>;

fn render(inner: &Inner, name: &str, ctx: minijinja::Value) -> Page {
    let template = inner
        .templates
        .get_template(name)
        .map_err(|e| internal("rendering", e))?;
    let html = template.render(ctx).map_err(|e| internal("rendering", e))?;
    Ok(Html(html).into_response())
}

/// Runs `f` on the blocking pool (the store's calls block).
async fn blocking<T: Send + 'static>(
    console: &Console,
    f: impl FnOnce(&Inner) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let inner = console.inner().clone();
    tokio::task::spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| internal("a request", e))?
}

fn store_err(e: riposte_store::Error) -> Failure {
    if e.is_not_found() {
        return Failure(StatusCode::NOT_FOUND, e.to_string());
    }
    if e.refusal().is_some() {
        return Failure(StatusCode::CONFLICT, e.to_string());
    }
    internal("reading the state database", e)
}

// ---------------------------------------------------------------------------------------
// Sessions.

/// The logged-in user of a request.
#[derive(Clone, Debug)]
pub(crate) struct Who {
    user: UserName,
    role: Role,
    csrf: String,
    token: String,
}

impl Who {
    fn context(&self) -> minijinja::Value {
        context! { name => self.user.as_str(), role => self.role.name(), csrf => &self.csrf,
        may_decide => self.role.may_decide() }
    }

    fn identity(&self) -> String {
        format!("console:{}", self.user)
    }
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session of the request and its user as stored now (a removed user's session ends;
/// a changed role applies at once); `Err` redirects to `/login`.
async fn who(console: &Console, headers: &HeaderMap) -> Result<Who, Response> {
    let login = || Redirect::to("/login").into_response();
    let Some(token) = cookie(headers, SESSION_COOKIE).map(str::to_owned) else {
        return Err(login());
    };
    let found = blocking(console, move |inner| {
        let now = (inner.clock)();
        let store = &inner.store;
        let Some(session) = inner
            .sessions
            .touch(store, &token, now)
            .map_err(store_err)?
        else {
            return Ok(None);
        };
        match store.get_user(&session.user).map_err(store_err)? {
            Some(user) => Ok(Some(Who {
                user: user.name,
                role: user.role,
                csrf: session.csrf,
                token,
            })),
            None => {
                inner.sessions.remove(store, &token).map_err(store_err)?;
                Ok(None)
            }
        }
    })
    .await
    .map_err(IntoResponse::into_response)?;
    found.ok_or_else(login)
}

/// A page for the logged-in user: `f` runs on the blocking pool with the user and the time.
async fn viewed(
    console: Console,
    headers: &HeaderMap,
    f: impl FnOnce(&Inner, Who, i64) -> Page + Send + 'static,
) -> Response {
    let who = match who(&console, headers).await {
        Ok(who) => who,
        Err(r) => return r,
    };
    blocking(&console, move |inner| f(inner, who, (inner.clock)()))
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A form that carries the CSRF token of the session it was served in (field `csrf`).
trait CarriesCsrf {
    fn csrf(&self) -> &str;
}

/// A form posted by the logged-in user of the session whose CSRF token it carries: without
/// a session the post is sent to `/login`, without the token (or with another) it is
/// refused (403).
struct Posted<F> {
    who: Who,
    form: F,
}

impl<F> FromRequest<Console> for Posted<F>
where
    F: DeserializeOwned + CarriesCsrf + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Response> {
        let headers = request.headers().clone();
        let Form(form) = Form::<F>::from_request(request, console)
            .await
            .map_err(IntoResponse::into_response)?;
        let who = who(console, &headers).await?;
        let csrf = form.csrf();
        if csrf.is_empty() || !constant_time_eq(csrf, &who.csrf) {
            return Err(Failure(
                StatusCode::FORBIDDEN,
                "this form is not from your session (reload the page and try again)".into(),
            )
            .into_response());
        }
        Ok(Self { who, form })
    }
}

/// As [`Posted`], for a decision: only approvers and admins decide (403 otherwise).
struct Decided<F> {
    who: Who,
    form: F,
}

impl<F> FromRequest<Console> for Decided<F>
where
    F: DeserializeOwned + CarriesCsrf + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, console: &Console) -> Result<Self, Response> {
        let Posted { who, form } = Posted::<F>::from_request(request, console).await?;
        if !who.role.may_decide() {
            let why = format!(
                "{} is a {}: only approvers and admins decide",
                who.user, who.role
            );
            return Err(Failure(StatusCode::FORBIDDEN, why).into_response());
        }
        Ok(Self { who, form })
    }
}

/// Appends a console action to the audit trail, by `by`, and syncs it.
fn audit_event(
    inner: &Inner,
    event: &str,
    by: &str,
    mut arguments: serde_json::Value,
    action: Option<&ActionRecord>,
) -> Result<(), Failure> {
    let mut entry = Entry::new((inner.clock)(), Call::event(event));
    if let Some(record) = action {
        entry.plugin = Some(record.plugin.clone());
        entry.plugin_digest = Some(record.plugin_digest);
        entry.malop = record.malop_id.clone();
    }
    arguments["by"] = json!(by);
    entry.arguments = Redacted::from_value(arguments);
    let sink = inner.auditor.sink();
    sink.append(&entry)
        .and_then(|_| sink.sync())
        .map_err(|e| internal("writing the audit trail", e))
}

// ---------------------------------------------------------------------------------------
// Login and logout.

async fn login_page(State(console): State<Console>) -> Page {
    render(console.inner(), "login.html", context! { error => "" })
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Page {
    let inner = console.inner().clone();
    let now = (inner.clock)();
    let shown = clip(&form.username, 64);
    let from = peer.ip().to_string();
    if !inner.limiter.begin(&from, &shown, now) {
        let by = format!("console:{shown}");
        let addr = peer.ip().to_string();
        blocking(&console, move |inner| {
            audit_event(
                inner,
                "console-login-refused",
                &by,
                json!({ "from": addr, "why": "too many failures" }),
                None,
            )
        })
        .await?;
        let mut page = render(
            &inner,
            "login.html",
            context! { error => "Too many failed logins: wait a few minutes and try again." },
        )?;
        *page.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return Ok(page);
    }
    let name = UserName::parse(&form.username).ok();
    let password = form.password;
    let addr = from.clone();
    let by = format!("console:{shown}");
    let user = blocking(&console, move |inner| {
        let user = match &name {
            Some(name) => inner.store.get_user(name).map_err(store_err)?,
            None => None,
        };
        // Verified against a hash even when there is no such user, so the answer takes
        // as long either way.
        let hash = user
            .as_ref()
            .map_or(inner.dummy_hash.as_str(), |u| u.password_hash.as_str());
        let ok = auth::verify_password(&password, hash) && user.is_some();
        if ok {
            audit_event(inner, "console-login", &by, json!({ "from": addr }), None)?;
        } else {
            audit_event(
                inner,
                "console-login-failed",
                &by,
                json!({ "from": addr }),
                None,
            )?;
        }
        Ok(user.filter(|_| ok))
    })
    .await?;
    let Some(user) = user else {
        let mut page = render(
            &inner,
            "login.html",
            context! { error => "Wrong name or password." },
        )?;
        *page.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(page);
    };
    inner.limiter.succeeded(&from, &shown, now);
    let (token, _) = blocking(&console, move |inner| {
        inner
            .sessions
            .create(&inner.store, user.name, now)
            .map_err(store_err)
    })
    .await?;
    let mut response = Redirect::to("/").into_response();
    let secure = if inner.settings.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| internal("the session cookie", e))?,
    );
    Ok(response)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

impl CarriesCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn logout(State(console): State<Console>, Posted { who, .. }: Posted<CsrfForm>) -> Response {
    let by = who.identity();
    let audited = blocking(&console, move |inner| {
        inner
            .sessions
            .remove(&inner.store, &who.token)
            .map_err(store_err)?;
        audit_event(inner, "console-logout", &by, json!({}), None)
    })
    .await;
    if let Err(failure) = audited {
        return failure.into_response();
    }
    let mut response = Redirect::to("/login").into_response();
    let secure = if console.inner().settings.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

// ---------------------------------------------------------------------------------------
// What the pages show of actions, approvals and budgets.

#[derive(Serialize)]
struct ActionView {
    id: String,
    short: String,
    plugin: String,
    digest: String,
    malop: Option<String>,
    kinds: Vec<String>,
    would: String,
    targets: Vec<String>,
    reason: String,
    state: String,
    progress: Option<String>,
    error: Option<String>,
    request_hash: String,
    created: String,
    updated: String,
    undo_of: Option<String>,
}

fn action_view(a: &ActionRecord, now: i64) -> ActionView {
    ActionView {
        id: a.id.as_str().to_owned(),
        short: a.id.as_str().chars().take(12).collect(),
        plugin: a.plugin.as_str().to_owned(),
        digest: a.plugin_digest.to_hex(),
        malop: a.malop_id.as_ref().map(|m| m.as_str().to_owned()),
        kinds: a.kinds.iter().map(|k| k.to_string()).collect(),
        would: would(&a.request, &a.machine_names),
        targets: targets(a).iter().map(|t| clip(t, CELL)).collect(),
        reason: clip(&a.reason, DETAIL),
        state: a.state.to_string(),
        progress: a.progress.map(|p| format!("{p:?}")),
        error: a.last_error.as_deref().map(|e| clip(e, DETAIL)),
        request_hash: a.request_hash.to_hex(),
        created: when(a.created_at_ms, now),
        updated: when(a.updated_at_ms, now),
        undo_of: a.undo_of.as_ref().map(|u| u.as_str().to_owned()),
    }
}

/// Every target of an action, as shown (machines named beside their guids).
fn targets(action: &ActionRecord) -> Vec<String> {
    let names = &action.machine_names;
    match &action.request {
        ActionRequest::Remediate { targets, .. } => targets
            .iter()
            .map(|t| format!("{} on {}", t.kind.as_api(), machine(&t.machine_guid, names)))
            .collect(),
        ActionRequest::Isolate { machines, .. } | ActionRequest::Unisolate { machines, .. } => {
            machines.iter().map(|m| machine(m, names)).collect()
        }
        ActionRequest::SetReputation { keys, .. } | ActionRequest::RemoveReputation { keys } => {
            keys.iter().map(|k| k.value.clone()).collect()
        }
        ActionRequest::SetStatus { .. } | ActionRequest::AddComment { .. } => Vec::new(),
    }
}

#[derive(Serialize)]
struct BudgetView {
    what: String,
    used: u64,
    max: u64,
    remaining: u64,
}

fn budget_view(b: &BudgetStatus) -> BudgetView {
    BudgetView {
        what: b.budget.to_string(),
        used: b.used,
        max: b.budget.max,
        remaining: b.remaining,
    }
}

/// The budgets of `plugin` (and the global ones) now.
fn budgets(inner: &Inner, plugin: &PluginName, now: i64) -> Vec<BudgetStatus> {
    let policy = inner.operator.plugin(plugin).map(|p| p.policy());
    inner
        .gate
        .budget_status(policy.as_ref(), now)
        .unwrap_or_else(|e| {
            tracing::warn!("console: budget status of {plugin}: {e}");
            Vec::new()
        })
}

#[derive(Serialize)]
struct PendingView {
    action: ActionView,
    hash: String,
    requested: String,
    expires: String,
    /// How many distinct approvers it needs.
    quorum: u32,
    /// Who approved it so far.
    approved_by: Vec<String>,
    /// The budgets the action would spend: those that count one of its kinds, with how
    /// many units it would take.
    spends: Vec<(BudgetView, usize)>,
}

fn pending_view(inner: &Inner, p: &PendingApproval, now: i64) -> PendingView {
    let units = targets(&p.action).len().max(1);
    let spends = budgets(inner, &p.action.plugin, now)
        .iter()
        .filter(|b| p.action.kinds.iter().any(|k| b.budget.action.matches(*k)))
        .map(|b| (budget_view(b), units))
        .collect();
    PendingView {
        action: action_view(&p.action, now),
        hash: p.action_hash.to_hex(),
        requested: when(p.requested_at_ms, now),
        expires: when(p.expires_at_ms, now),
        quorum: p.quorum,
        approved_by: p.approved_by.iter().map(|a| clip(a, CELL)).collect(),
        spends,
    }
}

// ---------------------------------------------------------------------------------------
// The overview.

async fn overview(State(console): State<Console>, headers: HeaderMap) -> Response {
    viewed(console, &headers, move |inner, who, now| {
        let store = &inner.store;
        let status = store.status(now).map_err(store_err)?;
        let day = now - 24 * HOUR_MS;
        let week = store.activity_since(now - 7 * 24 * HOUR_MS).map_err(store_err)?;
        let mut plugins = Vec::new();
        let mut bars = Vec::new();
        for p in &inner.operator.plugins {
            let budgets = budgets(inner, &p.name, now);
            for b in &budgets {
                bars.push((format!("{}: {}", p.name, b.budget), b.used, b.budget.max));
            }
            let health = status.paused_plugins.iter().find(|h| h.plugin == p.name.as_str());
            let mut recent = PluginActivity::empty(p.name.clone(), now);
            let mut traps_week = 0;
            for a in week.iter().filter(|a| a.plugin == p.name) {
                traps_week += a.traps;
                if a.hour_ms + HOUR_MS > day {
                    recent.add(a);
                }
                recent.last_invocation_ms = recent.last_invocation_ms.max(a.last_invocation_ms);
            }
            plugins.push(json!({
                "name": p.name.as_str(),
                "mode": match p.rules.mode { Mode::Enforce => "enforce", Mode::Shadow => "shadow" },
                "digest": p.sha256.to_hex(),
                "budgets": budgets.iter().map(budget_view).collect::<Vec<_>>(),
                "paused_until": store.paused_until(p.name.as_str(), now).map_err(store_err)?.map(|t| when(t, now)),
                "traps_in_a_row": health.map_or(0, |h| h.consecutive_traps),
                "traps_week": traps_week,
                "invocations_day": recent.invocations,
                "decisions_day": recent.decisions,
                "last_invocation": recent.last_invocation_ms.map(|t| when(t, now)),
            }));
        }
        let pending: Vec<PendingView> = store
            .list_pending(now)
            .map_err(store_err)?
            .iter()
            .take(20)
            .map(|p| pending_view(inner, p, now))
            .collect();
        let recent = store
            .list_actions(&ActionFilter { limit: Some(ACTIONS_READ), created_since_ms: Some(day), ..Default::default() })
            .map_err(store_err)?;
        let chart = svg::actions_per_hour(&recent, day, now);
        let recent: Vec<ActionView> = recent.iter().take(25).map(|a| action_view(a, now)).collect();
        let hosts: Vec<_> = status
            .hosts
            .iter()
            .map(|h| json!({ "host": h.host_id, "version": h.version, "heartbeat": when(h.heartbeat_ms, now),
                "last_event": h.last_event_ms.map(|t| when(t, now)),
                "holding": clip(&h.holding, CELL),
                "lease": status.leases.iter().find(|l| l.holder == h.host_id && l.expires_at_ms > now).map(|l| l.name.clone()) }))
            .collect();
        let last_event = status.hosts.iter().filter_map(|h| h.last_event_ms).max();
        render(inner, "overview.html", context! {
            who => who.context(),
            hosts, plugins, pending, recent,
            pending_count => status.pending_approvals,
            last_poll => status.last_poll_ms().map(|t| when(t, now)),
            last_event => last_event.map(|t| when(t, now)),
            by_state => status.actions_by_state.iter().map(|(s, n)| (s.to_string(), *n)).collect::<Vec<_>>(),
            actions_chart => chart,
            decision_charts => svg::decisions_per_hour(&week, day, now),
            budgets_chart => svg::budget_bars(&bars),
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Approvals.

async fn approvals(State(console): State<Console>, headers: HeaderMap) -> Response {
    viewed(console, &headers, move |inner, who, now| {
        let pending: Vec<PendingView> = inner
            .store
            .list_pending(now)
            .map_err(store_err)?
            .iter()
            .map(|p| pending_view(inner, p, now))
            .collect();
        render(
            inner,
            "approvals.html",
            context! { who => who.context(), pending },
        )
    })
    .await
}

fn action_id(id: &str) -> Result<ActionId, Failure> {
    ActionId::parse(id).ok_or_else(|| Failure(StatusCode::NOT_FOUND, "no such action".into()))
}

async fn approval(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    viewed(console, &headers, move |inner, who, now| {
        let id = action_id(&id)?;
        let record = inner.store.get_action(&id).map_err(store_err)?;
        let pending = inner
            .store
            .list_pending(now)
            .map_err(store_err)?
            .into_iter()
            .find(|p| p.action.id == id)
            .map(|p| pending_view(inner, &p, now));
        render(
            inner,
            "approval.html",
            context! {
                who => who.context(),
                action => action_view(&record, now),
                pending,
                cybereason => malop_link(inner, record.malop_id.as_ref()),
            },
        )
    })
    .await
}

#[derive(Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    hash: String,
}

impl CarriesCsrf for DecideForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /approvals/{id}/approve` and `/approvals/{id}/deny`.
async fn decide_route(
    State(console): State<Console>,
    Path((id, verb)): Path<(String, String)>,
    decided: Decided<DecideForm>,
) -> Response {
    let approve = match verb.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    decide(console, decided, id, approve).await
}

/// Approves or denies as the logged-in approver, bound to the hash the page showed, and
/// audits it as `console:NAME`.
async fn decide(
    console: Console,
    Decided { who, form }: Decided<DecideForm>,
    id: String,
    approve: bool,
) -> Response {
    blocking(&console, move |inner| {
        let now = (inner.clock)();
        let id = action_id(&id)?;
        let seen = Sha256Digest::from_hex(&form.hash).ok_or_else(|| {
            Failure(
                StatusCode::BAD_REQUEST,
                "the form lacks the action's hash".into(),
            )
        })?;
        let verdict = if approve {
            Verdict::Approve {
                seen_hash: Some(seen),
            }
        } else {
            Verdict::Deny
        };
        let by = Operator::console_user(who.user.as_str());
        decisions::decide(&inner.store, inner.auditor.sink(), &id, verdict, &by, now)
            .map_err(decision_err)?;
        Ok(Redirect::to(&format!("/approvals/{}", id.as_str())).into_response())
    })
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

// ---------------------------------------------------------------------------------------
// Time-boxed containment.

async fn containment(State(console): State<Console>, headers: HeaderMap) -> Response {
    viewed(console, &headers, move |inner, who, now| {
        let mut boxes = Vec::new();
        for b in inner.store.open_time_boxes().map_err(store_err)? {
            let action = inner.store.get_action(&b.action_id).map_err(store_err)?;
            boxes.push(json!({
                "action": action_view(&action, now),
                "deadline": when(b.deadline_ms, now),
                "extended_by": b.extended_by.as_deref().map(|e| clip(e, CELL)),
            }));
        }
        render(
            inner,
            "containment.html",
            context! { who => who.context(), boxes },
        )
    })
    .await
}

/// The longest extension at once, in hours.
const MAX_EXTEND_HOURS: i64 = 168;

#[derive(Deserialize)]
struct ChangeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    hours: Option<i64>,
}

impl CarriesCsrf for ChangeForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /containment/{id}/confirm` and `/containment/{id}/extend` (`hours`), as the
/// logged-in approver, through `riposte_service::decisions` (which audits them).
async fn change_containment(
    State(console): State<Console>,
    Path((id, verb)): Path<(String, String)>,
    Decided { who, form }: Decided<ChangeForm>,
) -> Response {
    let change = match (verb.as_str(), form.hours) {
        ("confirm", _) => TimeBoxChange::Confirm,
        ("extend", Some(hours)) if (1..=MAX_EXTEND_HOURS).contains(&hours) => {
            TimeBoxChange::Extend {
                by_ms: hours * 3_600_000,
            }
        }
        ("extend", _) => {
            return Failure(
                StatusCode::BAD_REQUEST,
                format!("extend by 1 to {MAX_EXTEND_HOURS} hours"),
            )
            .into_response();
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    blocking(&console, move |inner| {
        let id = action_id(&id)?;
        let by = Operator::console_user(who.user.as_str());
        decisions::change_time_box(
            &inner.store,
            inner.auditor.sink(),
            &id,
            change,
            &by,
            (inner.clock)(),
        )
        .map_err(decision_err)?;
        Ok(Redirect::to("/containment").into_response())
    })
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// A refused decision (already decided, expired, approved twice by one person, changed
/// since shown) is a conflict the person can read; anything else is the service's failure.
fn decision_err(error: anyhow::Error) -> Failure {
    match error.downcast::<riposte_store::Error>() {
        Ok(store) => store_err(store),
        Err(other) => internal("recording the decision", format!("{other:#}")),
    }
}

fn malop_link(inner: &Inner, malop: Option<&MalopId>) -> Option<String> {
    let server = inner.operator.service.server.as_ref()?;
    let malop = malop?;
    Some(format!(
        "{}/#/malop/{}",
        server.base_url.trim_end_matches('/'),
        percent_encode(malop.as_str())
    ))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// A Malop.

#[derive(Serialize)]
struct RecordView {
    seq: u64,
    time: String,
    plugin: Option<String>,
    malop: Option<String>,
    call: String,
    decision: Option<String>,
    detail: String,
    arguments: String,
}

fn record_view(r: &riposte_audit::Record, now: i64) -> RecordView {
    RecordView {
        seq: r.seq,
        time: when(r.time_ms, now),
        plugin: r.plugin.as_ref().map(|p| p.as_str().to_owned()),
        malop: r.malop.as_ref().map(|m| m.as_str().to_owned()),
        call: clip(r.call.as_str(), CELL),
        decision: r.decision.as_ref().map(|d| d.kind.name().to_owned()),
        detail: r
            .decision
            .as_ref()
            .map_or(String::new(), |d| clip(&d.detail, DETAIL)),
        arguments: clip(&r.arguments.to_string(), DETAIL),
    }
}

/// The last `max` records passing `keep`, newest first, and whether earlier ones were
/// left out.
fn read_audit(
    inner: &Inner,
    filter: riposte_audit::Filter,
    max: usize,
    keep: impl Fn(&riposte_audit::Record) -> bool,
) -> Result<(Vec<riposte_audit::Record>, bool), Failure> {
    let path = &inner.operator.service.audit.path;
    let mut last = VecDeque::with_capacity(max + 1);
    let mut more = false;
    let records = match riposte_audit::show(path, filter) {
        Ok(records) => records,
        Err(riposte_audit::Error::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok((Vec::new(), false));
        }
        Err(e) => return Err(internal("reading the audit trail", e)),
    };
    for record in records {
        let record = record.map_err(|e| internal("reading the audit trail", e))?;
        if keep(&record) {
            last.push_back(record);
            if last.len() > max {
                last.pop_front();
                more = true;
            }
        }
    }
    Ok((last.into_iter().rev().collect(), more))
}

async fn malop(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    viewed(console, &headers, move |inner, who, now| {
        if id.len() > 256 {
            return Err(Failure(StatusCode::NOT_FOUND, "no such Malop".into()));
        }
        let malop = MalopId::new(id);
        let actions = inner
            .store
            .list_actions(&ActionFilter {
                malop_id: Some(malop.clone()),
                limit: Some(1000),
                ..Default::default()
            })
            .map_err(store_err)?;
        let mut per_plugin: BTreeMap<String, Vec<ActionView>> = BTreeMap::new();
        for a in &actions {
            per_plugin
                .entry(a.plugin.as_str().to_owned())
                .or_default()
                .push(action_view(a, now));
        }
        let filter = riposte_audit::Filter {
            malop: Some(malop.clone()),
            ..Default::default()
        };
        let (records, more) = read_audit(inner, filter, 1000, |_| true)?;
        let shadow: Vec<RecordView> = records
            .iter()
            .filter(|r| {
                r.decision
                    .as_ref()
                    .is_some_and(|d| d.kind == DecisionKind::Shadow)
            })
            .map(|r| record_view(r, now))
            .collect();
        render(
            inner,
            "malop.html",
            context! {
                who => who.context(),
                malop => malop.as_str(),
                per_plugin,
                shadow,
                calls => records.iter().map(|r| record_view(r, now)).collect::<Vec<_>>(),
                more,
                cybereason => malop_link(inner, Some(&malop)),
            },
        )
    })
    .await
}

// ---------------------------------------------------------------------------------------
// The audit trail.

#[derive(Deserialize, Default)]
struct AuditQuery {
    plugin: Option<String>,
    malop: Option<String>,
    decision: Option<String>,
    /// `YYYY-MM-DDTHH:MM` (UTC), as a datetime-local field sends it.
    from: Option<String>,
    to: Option<String>,
}

fn parse_time(value: Option<&str>) -> Result<Option<i64>, Failure> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let parsed = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            Failure(
                StatusCode::BAD_REQUEST,
                "a time is YYYY-MM-DDTHH:MM (UTC)".into(),
            )
        })?;
    Ok(Some(parsed.and_utc().timestamp_millis()))
}

fn audit_filter(q: &AuditQuery) -> Result<riposte_audit::Filter, Failure> {
    let nonempty = |v: &Option<String>| {
        v.as_deref()
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .map(str::to_owned)
    };
    let decision = match nonempty(&q.decision).as_deref() {
        None => None,
        Some(name) => Some(
            [
                DecisionKind::Allow,
                DecisionKind::Shadow,
                DecisionKind::AwaitApproval,
                DecisionKind::Deny,
            ]
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| Failure(StatusCode::BAD_REQUEST, "unknown decision".into()))?,
        ),
    };
    Ok(riposte_audit::Filter {
        plugin: nonempty(&q.plugin).map(PluginName::new),
        malop: nonempty(&q.malop).map(MalopId::new),
        decision,
    })
}

async fn audit(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let who = match who(&console, &headers).await {
        Ok(who) => who,
        Err(r) => return r,
    };
    audit_page(console, who, q, None).await
}

async fn audit_page(
    console: Console,
    who: Who,
    q: AuditQuery,
    verified: Option<(bool, String)>,
) -> Response {
    blocking(&console, move |inner| {
        let now = (inner.clock)();
        let filter = audit_filter(&q)?;
        let from = parse_time(q.from.as_deref())?;
        let to = parse_time(q.to.as_deref())?;
        let (records, more) = read_audit(inner, filter, AUDIT_PAGE, |r| {
            from.is_none_or(|f| r.time_ms >= f) && to.is_none_or(|t| r.time_ms <= t)
        })?;
        render(inner, "audit.html", context! {
            who => who.context(),
            records => records.iter().map(|r| record_view(r, now)).collect::<Vec<_>>(),
            more,
            page => AUDIT_PAGE,
            q => json!({ "plugin": q.plugin, "malop": q.malop, "decision": q.decision, "from": q.from, "to": q.to }),
            plugins => inner.operator.plugins.iter().map(|p| p.name.as_str().to_owned()).collect::<Vec<_>>(),
            verified => verified.as_ref().map(|(ok, text)| json!({ "ok": ok, "text": text })),
        })
    })
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

async fn verify(State(console): State<Console>, Posted { who, .. }: Posted<CsrfForm>) -> Response {
    let by = who.identity();
    let result = blocking(&console, move |inner| {
        let audit = &inner.operator.service.audit;
        let result = audit.load_key().and_then(|key| {
            riposte_audit::verify_with(
                &audit.path,
                &riposte_audit::VerifyOptions {
                    key,
                    ..Default::default()
                },
            )
        });
        let (ok, text) = match result {
            Ok(report) => (true, report.to_string()),
            Err(e) => (false, e.to_string()),
        };
        audit_event(
            inner,
            "console-audit-verified",
            &by,
            json!({ "ok": ok }),
            None,
        )?;
        Ok((ok, text))
    })
    .await;
    match result {
        Ok(verified) => audit_page(console, who, AuditQuery::default(), Some(verified)).await,
        Err(f) => f.into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// The shadow report.

#[derive(Deserialize)]
struct ShadowQuery {
    hours: Option<u32>,
}

async fn shadow(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(q): Query<ShadowQuery>,
) -> Response {
    let hours = q.hours.unwrap_or(24).clamp(1, 24 * 90);
    viewed(console, &headers, move |inner, who, now| {
        let since = now - i64::from(hours) * 3_600_000;
        let mut reports = Vec::new();
        for p in inner.operator.plugins.iter().filter(|p| p.rules.mode == Mode::Shadow) {
            let actions = inner
                .store
                .list_actions(&ActionFilter {
                    states: vec![ActionState::Shadowed],
                    plugin: Some(p.name.clone()),
                    created_since_ms: Some(since),
                    limit: Some(ACTIONS_READ),
                    ..Default::default()
                })
                .map_err(store_err)?;
            let mut per_kind: BTreeMap<String, u64> = BTreeMap::new();
            for a in &actions {
                for k in &a.kinds {
                    *per_kind.entry(k.to_string()).or_default() += 1;
                }
            }
            reports.push(json!({
                "plugin": p.name.as_str(),
                "total": actions.len(),
                "capped": actions.len() as u32 >= ACTIONS_READ,
                "per_kind": per_kind,
                "chart": svg::actions_per_hour(&actions, since, now),
                "actions": actions.iter().take(200).map(|a| action_view(a, now)).collect::<Vec<_>>(),
            }));
        }
        render(inner, "shadow.html", context! { who => who.context(), hours, reports })
    })
    .await
}
