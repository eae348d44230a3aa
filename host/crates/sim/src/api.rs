//! The simulated REST API. Every handler works on the locked state and returns a [`Reply`].

use super::pages::{APP_PAGE, LOGIN_PAGE, TWO_FACTOR_PAGE};
use super::query;
use super::render;
use super::reply::Reply;
use super::state::{SimAction, SimRemediation, SimReputation, SimState};
use riposte_domain::ManagementStatus;
use serde_json::{Value, json};

/// Routes one request (the session is checked here for `/rest`).
pub fn route(
    st: &mut SimState,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &[u8],
) -> Reply {
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET", "/login.html") => Reply::html(LOGIN_PAGE),
        ("POST", "/login.html") => login(st, body),
        ("GET" | "POST", "/logout") => {
            if let Some(c) = cookie {
                st.sessions.remove(c);
            }
            Reply::to_login()
        }
        (_, p) if p.starts_with("/rest/") => {
            if !cookie.is_some_and(|c| st.sessions.contains(c)) {
                return Reply::to_login();
            }
            let segs: Vec<String> = p["/rest/".len()..].split('/').map(decode).collect();
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            rest(st, method, &segs, body)
        }
        _ => Reply::text(404, "Not Found"),
    }
}

fn rest(st: &mut SimState, method: &str, segs: &[&str], body: &[u8]) -> Reply {
    if method == "GET" {
        return match segs {
            ["remediate", "progress", _user, malop, rid] => progress(st, malop, rid),
            ["remediate", "status", malop] => status_list(st, malop),
            ["classification", "download"] => download(st),
            _ => Reply::text(404, "Not Found"),
        };
    }
    match segs {
        ["crimes", "comment", malop] => return comment(st, malop, body),
        ["crimes", "get-comments"] => return get_comments(st, body),
        ["remediate", "abort", malop, rid] => return abort(st, malop, rid),
        _ => {}
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Reply::bad_request(&format!("Malformed JSON request: {e}")),
    };
    match segs {
        ["crimes", "unified"] => query::crimes_unified(st, &v),
        ["visualsearch", "query", "simple"] if st.refuse_investigation => {
            Reply::json(200, &render::failure(super::state::INVESTIGATION_REFUSED))
        }
        ["visualsearch", "query", "simple"] => query::visual(st, &v),
        ["detection", "inbox"] => query::inbox(st, &v),
        ["mmng", "v2", "malops"] => query::mmng(st, &v),
        ["sensors", "query"] => query::sensors(st, &v),
        ["remediate"] => remediate(st, &v),
        [
            "monitor",
            "global",
            "commands",
            cmd @ ("isolate" | "un-isolate"),
        ] => isolation(st, &v, *cmd == "isolate"),
        ["classification", "update"] => classification(st, &v),
        ["crimes", "status"] => set_status(st, &v),
        _ => Reply::text(404, "Not Found"),
    }
}

fn decode(seg: &str) -> String {
    let bytes = seg.as_bytes();
    let (mut out, mut i) = (Vec::with_capacity(bytes.len()), 0);
    while i < bytes.len() {
        let hex = seg
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=b&c=d` (with `+` and `%XX`).
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((decode(&k.replace('+', " ")), decode(&v.replace('+', " "))))
        })
        .collect()
}

fn login(st: &mut SimState, body: &[u8]) -> Reply {
    let fields = form(body);
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let ok = get("username") == Some(st.username.as_str())
        && get("password") == Some(st.password.as_str());
    let id = st.new_session_id();
    let cookie = format!("JSESSIONID={id}; Path=/; HttpOnly");
    let mut reply = if st.login_redirects && !(ok && st.two_factor) {
        if ok {
            st.sessions.insert(id);
        }
        let mut redirect = Reply::to_login();
        if ok {
            redirect.headers = vec![("location", "/".into())];
        }
        redirect
    } else if !ok {
        // The quirk: HTTP 200, the login page again, and a cookie that is not a session.
        Reply::html(LOGIN_PAGE)
    } else if st.two_factor {
        Reply::html(TWO_FACTOR_PAGE)
    } else {
        st.sessions.insert(id);
        Reply::html(APP_PAGE)
    };
    reply.headers.push(("set-cookie", cookie));
    reply
}

fn remediate(st: &mut SimState, v: &Value) -> Reply {
    let Some(by_machine) = v.get("actionsByMachine").and_then(Value::as_object) else {
        return Reply::bad_request("actionsByMachine must be an object keyed by machine guid");
    };
    let malop_id = v.get("malopId").and_then(Value::as_str).map(str::to_owned);
    let mut actions = Vec::new();
    for (machine, list) in by_machine {
        for item in list.as_array().into_iter().flatten() {
            let target = item
                .get("targetId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let action = item
                .get("actionType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let error = action_error(st, malop_id.as_deref(), machine, &target, &action);
            actions.push(SimAction {
                machine: machine.clone(),
                target,
                action,
                error,
            });
        }
    }
    let start = st.tick();
    let r = SimRemediation {
        id: st.rng.uuid(),
        malop_id,
        initiator: v
            .get("initiatorUserName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        start,
        steps: 0,
        aborted: false,
        end: None,
        actions,
    };
    let reply = render::remediation(&r);
    st.remediations.push(r);
    Reply::json(200, &reply)
}

fn action_error(
    st: &SimState,
    malop: Option<&str>,
    machine: &str,
    target: &str,
    action: &str,
) -> Option<(String, String)> {
    let invalid = |m: String| Some((m, "INVALID_ARGUMENT".to_owned()));
    if riposte_domain::RemediationKind::from_api(action).is_none() {
        return invalid(format!("Unknown action type: {action}"));
    }
    let Some(m) = st.machine(machine) else {
        return invalid(format!(
            "Failed to get ProbeRemediationRequest for action: {action} (unknown machine {machine})"
        ));
    };
    if malop.is_some_and(|id| st.malop(id).is_none()) {
        return invalid(format!("Unknown malop {}", malop.unwrap_or_default()));
    }
    if action == "UNQUARANTINE_FILE" {
        // It takes the quarantined copy's guid, not the original file's (§3.1).
        let held = st
            .quarantines()
            .iter()
            .any(|q| q.guid == target && q.machine == machine);
        if !held {
            return invalid(format!(
                "Failed to get ProbeRemediationRequest for action: {action} ({target} is not a quarantined file on {machine})"
            ));
        }
    } else if !st.malops.iter().any(|x| {
        x.suspects
            .iter()
            .any(|p| p.guid == target || p.autoruns.iter().any(|(g, _)| g == target))
            || x.files.iter().any(|f| f.guid == target)
    }) {
        return invalid(format!(
            "Failed to get ProbeRemediationRequest for action: {action} (unknown target {target})"
        ));
    }
    if !m.online {
        return Some((
            "Sensor is disconnected".to_owned(),
            "SENSOR_DISCONNECTED".to_owned(),
        ));
    }
    None
}

fn find_remediation(st: &SimState, malop: &str, rid: &str) -> Option<usize> {
    st.remediations
        .iter()
        .position(|r| r.id == rid && r.malop_id.as_deref().unwrap_or("") == malop)
}

fn progress(st: &mut SimState, malop: &str, rid: &str) -> Reply {
    let Some(i) = find_remediation(st, malop, rid) else {
        return Reply::bad_request(&format!("Remediation {rid} not found for malop {malop}"));
    };
    st.poll_step(i);
    Reply::json(200, &render::remediation(&st.remediations[i]))
}

fn status_list(st: &mut SimState, malop: &str) -> Reply {
    let idx: Vec<usize> = (0..st.remediations.len())
        .filter(|&i| st.remediations[i].malop_id.as_deref() == Some(malop))
        .collect();
    for &i in &idx {
        st.poll_step(i);
    }
    let list: Vec<Value> = idx
        .iter()
        .map(|&i| render::remediation(&st.remediations[i]))
        .collect();
    Reply::json(200, &Value::Array(list))
}

fn abort(st: &mut SimState, malop: &str, rid: &str) -> Reply {
    let Some(i) = find_remediation(st, malop, rid) else {
        return Reply::bad_request(&format!("Remediation {rid} not found for malop {malop}"));
    };
    let now = st.tick();
    let r = &mut st.remediations[i];
    if r.steps < super::state::FINAL_STEP && !r.aborted {
        r.aborted = true;
        r.end = Some(now);
    }
    Reply::json(200, &render::remediation(r))
}

fn isolation(st: &mut SimState, v: &Value, isolate: bool) -> Reply {
    let ids = query::strings(v, "pylumIds").unwrap_or_default();
    if !ids
        .iter()
        .any(|id| st.machines.iter().any(|m| m.has_pylum_id(id)))
    {
        return Reply::json(
            400,
            &json!({"status": "FAILURE", "message": "NO_MATCHING_SENSORS"}),
        );
    }
    let mut out = serde_json::Map::new();
    for id in ids {
        let status = match st.machines.iter_mut().find(|m| m.has_pylum_id(id)) {
            None => "UnknownProbe",
            Some(m) if m.online => {
                m.isolated = isolate;
                m.primed = None;
                "Succeeded"
            }
            Some(m) => {
                m.primed = Some(isolate);
                "Primed"
            }
        };
        out.insert(id.to_owned(), json!(status));
    }
    st.tick();
    Reply::json(200, &Value::Object(out))
}

fn classification(st: &mut SimState, v: &Value) -> Reply {
    let Some(items) = v.as_array() else {
        return Reply::bad_request(
            "Cannot deserialize instance of `java.util.ArrayList` out of START_OBJECT token",
        );
    };
    let mut changes = Vec::new();
    for item in items {
        match reputation_change(item) {
            Ok(c) => changes.push(c),
            Err(msg) => return Reply::json(200, &json!({"outcome": "failed", "data": msg})),
        }
    }
    for (keys, rep) in changes {
        for key in keys {
            match &rep {
                Some(r) => st.reputations.insert(key, r.clone()),
                None => st.reputations.remove(&key),
            };
        }
    }
    st.tick();
    Reply::json(200, &json!({"outcome": "success", "data": "true"}))
}

type Change = (Vec<String>, Option<SimReputation>);

fn reputation_change(item: &Value) -> Result<Change, String> {
    let keys: Vec<String> = item
        .get("keys")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .filter(|k: &Vec<String>| !k.is_empty())
        .ok_or("keys must be a non-empty array of strings")?;
    let flag = |name: &str| match item.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    if flag("remove") {
        return Ok((keys, None));
    }
    let verdict = match item.get("maliciousType").and_then(Value::as_str) {
        Some(v @ ("blacklist" | "whitelist")) => v.to_owned(),
        other => return Err(format!("invalid maliciousType {other:?}")),
    };
    let prevent = flag("prevent");
    if prevent && keys.iter().any(|k| !is_hash(k)) {
        return Err("prevent is only allowed for file hashes".into());
    }
    let comment = item
        .get("comment")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    Ok((
        keys,
        Some(SimReputation {
            verdict,
            prevent,
            comment,
        }),
    ))
}

fn is_hash(k: &str) -> bool {
    matches!(k.len(), 32 | 40 | 64) && k.chars().all(|c| c.is_ascii_hexdigit())
}

fn download(st: &SimState) -> Reply {
    let mut csv = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    let rows = std::iter::once(
        [
            "key",
            "reputation",
            "prevent execution",
            "comment",
            "remove",
        ]
        .map(String::from),
    )
    .chain(st.reputations.iter().map(|(key, r)| {
        [
            key.clone(),
            r.verdict.to_string(),
            r.prevent.to_string(),
            r.comment.clone(),
            "false".into(),
        ]
    }));
    for row in rows {
        // Writing to a Vec cannot fail.
        csv.write_record(&row).expect("CSV into memory");
    }
    let body = csv.into_inner().expect("CSV into memory");
    Reply {
        status: 200,
        headers: vec![(
            "content-disposition",
            "attachment; filename=reputations.csv".into(),
        )],
        content_type: "text/csv",
        body,
    }
}

fn set_status(st: &mut SimState, v: &Value) -> Reply {
    let Some(map) = v.as_object() else {
        return Reply::bad_request("body must be a map of malop guid to status");
    };
    for (guid, status) in map {
        let parsed = status.as_str().map(ManagementStatus::from_api);
        let Some(s) = parsed.filter(|s| *s != ManagementStatus::Unknown) else {
            return Reply::json(
                200,
                &json!({"status": "FAILURE", "message": format!("Invalid status {status}")}),
            );
        };
        let Some(m) = st.malops.iter_mut().find(|m| m.guid == *guid) else {
            return Reply::json(
                200,
                &json!({"status": "FAILURE", "message": format!("Malop {guid} not found")}),
            );
        };
        m.status = s;
    }
    Reply::json(
        200,
        &json!({"status": "SUCCESS", "message": "Malop status updated"}),
    )
}

fn comment(st: &mut SimState, malop: &str, body: &[u8]) -> Reply {
    let now = st.tick();
    let id = st.rng.uuid();
    let user = st.username.clone();
    let Some(m) = st.malops.iter_mut().find(|m| m.guid == malop) else {
        return Reply::json(
            200,
            &json!({"status": "FAILURE", "message": format!("Malop {malop} not found")}),
        );
    };
    let message = String::from_utf8_lossy(body).into_owned();
    m.comments.push(super::data::SimComment {
        id: id.clone(),
        username: user.clone(),
        message: message.clone(),
        timestamp: now,
    });
    Reply::json(
        200,
        &json!({"commentId": id, "username": user, "message": message, "timestamp": now}),
    )
}

fn get_comments(st: &SimState, body: &[u8]) -> Reply {
    let guid = String::from_utf8_lossy(body)
        .trim()
        .trim_matches('"')
        .to_owned();
    let Some(m) = st.malop(&guid) else {
        return Reply::json(200, &json!([]));
    };
    let list: Vec<Value> = m
        .comments
        .iter()
        .map(|c| {
            json!({"commentId": c.id, "username": c.username,
            "message": html_escape(&c.message), "timestamp": c.timestamp})
        })
        .collect();
    Reply::json(200, &Value::Array(list))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
