//! The simulator speaks the real server's quirks (raw HTTP, no riposte client involved).

use riposte_sim::{SimConfig, SimHandle, Simulator};
use serde_json::{Value, json};

const PASSWORD: &str = "S1m-Password";

async fn sim(seed: u64) -> SimHandle {
    let cfg = SimConfig {
        seed,
        malops: 12,
        password: PASSWORD.into(),
        ..SimConfig::default()
    };
    Simulator::start(cfg).await.unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Sends a request to the control API and reads its JSON answer.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn cookie_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("JSESSIONID="))
        .map(|v| v.split(';').next().unwrap().to_owned())
}

async fn login(s: &SimHandle, password: &str) -> (reqwest::Response, Option<String>) {
    let resp = http()
        .post(format!("{}/login.html", s.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username=analyst%40riposte.local&password={password}"
        ))
        .send()
        .await
        .unwrap();
    let cookie = cookie_of(&resp);
    (resp, cookie)
}

async fn rest(s: &SimHandle, cookie: &str, path: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", s.base_url()))
        .header("cookie", format!("JSESSIONID={cookie}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_page_and_login_quirks() {
    let s = sim(1).await;
    let page = http()
        .get(format!("{}/login.html", s.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let text = page.text().await.unwrap();
    assert!(text.contains("<title>Cybereason | Login</title>") && text.contains("<app-login>"));

    // A bad password: 200, the login page again, and a cookie that is no session.
    let (resp, bad_cookie) = login(&s, "wrong").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("<app-login>"));
    let bad_cookie = bad_cookie.expect("the quirk: a cookie even on failure");
    let r = rest(&s, &bad_cookie, "/rest/crimes/unified", json!({})).await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/login.html");

    let (resp, cookie) = login(&s, PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let cookie = cookie.unwrap();
    assert_eq!(cookie.len(), 32);
    assert!(cookie.chars().all(|c| matches!(c, '0'..='9' | 'A'..='F')));
    let r = rest(
        &s,
        &cookie,
        "/rest/sensors/query",
        json!({"limit": 1, "offset": 0}),
    )
    .await;
    assert_eq!(r.status(), 200);

    // The log shows every request and never the password.
    let log = s.requests();
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|r| !r.body.contains(PASSWORD)));
    assert!(log[1].body.contains("password=[redacted]"));
}

#[tokio::test]
async fn unauthenticated_rest_is_a_redirect_to_the_login_page() {
    let s = sim(1).await;
    let r = http()
        .post(format!("{}/rest/remediate", s.base_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/login.html");
    assert!(s.with_state(|st| st.remediations.is_empty()));
}

#[tokio::test]
async fn ids_have_the_real_formats_and_data_is_seeded() {
    let (a, b, c) = (sim(11).await, sim(11).await, sim(12).await);
    let (ma, mb, mc) = (a.malops(), b.malops(), c.malops());
    let ids = |m: &[riposte_sim::SimMalop]| m.iter().map(|x| x.guid.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&ma), ids(&mb), "same seed, same data");
    assert_ne!(ids(&ma), ids(&mc), "another seed, other data");
    let kinds: std::collections::BTreeSet<_> =
        ma.iter().map(|m| m.detection_type.as_str()).collect();
    assert_eq!(
        kinds.len(),
        4,
        "ransomware, known malware, blacklist, lateral movement"
    );
    for m in &ma {
        let (p, n) = m.guid.split_once('.').unwrap();
        assert_eq!(p, "11");
        n.parse::<i64>().unwrap();
    }
    for m in a.machines() {
        let (x, y) = m.guid.split_once('.').unwrap();
        x.parse::<i32>().unwrap();
        y.parse::<i64>().unwrap();
        let pylum_id = m
            .pylum_id
            .as_deref()
            .expect("generated machines have a sensor");
        let rest = pylum_id.strip_prefix("PYLUMCLIENT_RIPOSTE_").unwrap();
        let (host, mac) = rest.rsplit_once('_').unwrap();
        assert_eq!(host, m.name);
        assert!(mac.len() == 12 && mac.chars().all(|c| c.is_ascii_hexdigit()));
    }
    assert!(
        a.machines().iter().any(|m| !m.online),
        "some sensors are offline"
    );
    assert!(
        ma.iter()
            .flat_map(|m| &m.suspects)
            .any(|p| !p.autoruns.is_empty())
    );
}

#[tokio::test]
async fn failures_come_back_as_200_bodies_and_400s() {
    let s = sim(1).await;
    let (_, cookie) = login(&s, PASSWORD).await;
    let cookie = cookie.unwrap();
    let r = rest(
        &s,
        &cookie,
        "/rest/visualsearch/query/simple",
        json!({"queryPath": [{"requestedType": "Registry", "isResult": true}]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "FAILURE");
    let r = rest(
        &s,
        &cookie,
        "/rest/monitor/global/commands/isolate",
        json!({"pylumIds": ["PYLUMCLIENT_X_Y_Z"]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("NO_MATCHING_SENSORS"));
    let r = rest(
        &s,
        &cookie,
        "/rest/classification/update",
        json!({"keys": ["a"], "maliciousType": "blacklist"}),
    )
    .await;
    assert_eq!(r.status(), 400, "the body must be an array");
    let r = rest(
        &s,
        &cookie,
        "/rest/classification/update",
        json!([{"keys": ["1.2.3.4"], "maliciousType": "blacklist", "prevent": true}]),
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["outcome"], "failed");
    let r = rest(&s, &cookie, "/rest/crimes/unified", json!({"queryPath": [{"requestedType": "MalopProcess", "result": true}], "templateContext": "OVERVIEW"})).await;
    let v: Value = r.json().await.unwrap();
    let first = v["data"]["resultIdToElementDataMap"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        first["elementValues"],
        json!({}),
        "OVERVIEW omits elementValues"
    );
    assert!(
        first["simpleValues"]["creationTime"]["values"][0].is_string(),
        "epoch ms as strings"
    );
}

#[tokio::test]
async fn control_api_over_http() {
    let s = sim(1).await;
    let c = http();
    let base = s.base_url();
    let v: Value = json_of(c.post(format!("{base}/sim/malops"))).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let v: Value = json_of(c.post(format!("{base}/sim/malops/{id}/touch"))).await;
    assert!(v["lastUpdateTime"].as_i64().unwrap() > 0);
    let fault = json!({"kind": "429", "count": 1, "path_prefix": "/login.html"});
    let r = c
        .post(format!("{base}/sim/faults"))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (resp, _) = login(&s, PASSWORD).await;
    assert_eq!(resp.status(), 429);
    let (resp, cookie) = login(&s, PASSWORD).await;
    assert_eq!(resp.status(), 200);
    c.post(format!("{base}/sim/sessions/expire"))
        .send()
        .await
        .unwrap();
    let r = rest(&s, &cookie.unwrap(), "/rest/sensors/query", json!({})).await;
    assert_eq!(r.status(), 302);
    let pylum = s.machines()[0].pylum_id.clone().unwrap();
    let r = c
        .post(format!("{base}/sim/sensors/{pylum}/offline"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!s.machines()[0].online);
    let log: Value = json_of(c.get(format!("{base}/sim/requests"))).await;
    assert_eq!(
        log.as_array().unwrap().len(),
        3,
        "control calls are not logged"
    );
    assert_eq!(log[0]["status"], 429);
    c.delete(format!("{base}/sim/requests"))
        .send()
        .await
        .unwrap();
    assert!(s.requests().is_empty());
    let v: Value = json_of(
        c.post(format!("{base}/sim/advance"))
            .json(&json!({"steps": 1, "ms": 5000})),
    )
    .await;
    assert!(v["clock"].as_i64().unwrap() >= SimConfig::default().start_ms + 5000);
}

#[tokio::test]
async fn args_build_a_config_with_faults() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: riposte_sim::SimArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "from-file\n").unwrap();
    let cli = Cli::try_parse_from([
        "sim",
        "--seed",
        "3",
        "--malops",
        "5",
        "--password-file",
        pw.to_str().unwrap(),
        "--fail-500",
        "2",
        "--delay-ms",
        "10",
        "--delay-count",
        "1",
    ])
    .unwrap();
    let cfg = cli.sim.to_config().unwrap();
    assert_eq!(
        (cfg.seed, cfg.malops, cfg.password.as_str()),
        (3, 5, "from-file")
    );
    assert_eq!(cfg.faults.len(), 2);
    let s = Simulator::start(cfg).await.unwrap();
    assert_eq!(s.malops().len(), 5);
    let r = http()
        .post(format!("{}/rest/sensors/query", s.base_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "--fail-500 applies from the start");
}

/// A latency holds every API answer back that long after its request, and requests in
/// flight wait side by side: the second request arrives before the first is answered. Set by
/// flag, changed by the control call, which refuses what is not a number of ms up to a minute.
#[tokio::test]
async fn latency_holds_answers_back_side_by_side() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: riposte_sim::SimArgs,
    }
    let parse = |ms: &str| Cli::try_parse_from(["sim", "--latency-ms", ms]);
    assert!(parse("60001").is_err(), "more than a minute is refused");
    assert_eq!(parse("300").unwrap().sim.latency_ms, 300);
    let s = Simulator::start(SimConfig {
        latency_ms: 300,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let query = || {
        http()
            .post(format!("{}/rest/sensors/query", s.base_url()))
            .body("{}")
            .send()
    };
    let sent = std::time::Instant::now();
    let (first, second) = tokio::join!(query(), query());
    let (first_done, second_done) = (first.unwrap(), second.unwrap());
    let waited = sent.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "answered only after the latency: {waited:?}"
    );
    assert_eq!([first_done.status(), second_done.status()], [302, 302]);
    let log = s.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    // Both arrived within the first one's latency: neither waited for the other's answer.
    let (a, b) = (log[0].received_us, log[1].received_us);
    assert!(
        a.abs_diff(b) < 300_000,
        "the second request arrived {} µs after the first, after its answer",
        a.abs_diff(b)
    );
    let set = |body: &'static str| {
        http()
            .post(format!("{}/sim/latency", s.base_url()))
            .body(body)
            .send()
    };
    assert_eq!(set(r#"{"ms": -1}"#).await.unwrap().status(), 400);
    assert_eq!(set(r#"{"ms": 60001}"#).await.unwrap().status(), 400);
    assert_eq!(set("garbage").await.unwrap().status(), 400);
    assert_eq!(set(r#"{"ms": 60000}"#).await.unwrap().status(), 200);
    let reply = json_of(
        http()
            .post(format!("{}/sim/latency", s.base_url()))
            .body(r#"{"ms": 0}"#),
    )
    .await;
    assert_eq!(reply["latency_ms"], 0);
    // A minute's latency would outlast the client's 5 s timeout: 0 answers at once.
    assert_eq!(query().await.unwrap().status(), 302);
}

/// Fields sit where real servers put them (shared/cybereason-api.md §2.2, §2.3): the Malop's
/// priority is a member of the crimes/unified element, not a simple value, and inbox machines
/// carry no pylumId (mmng/v2 ones do).
#[tokio::test]
async fn fields_are_where_a_real_server_puts_them() {
    let s = sim(4).await;
    let cookie = login(&s, PASSWORD).await.1.unwrap();
    let path = json!({"requestedType": "MalopProcess", "result": true, "filters": null});
    let body = json!({"totalResultLimit": 10000, "templateContext": "MALOP", "queryPath": [path]});
    let unified: Value = rest(&s, &cookie, "/rest/crimes/unified", body)
        .await
        .json()
        .await
        .unwrap();
    let elements = unified["data"]["resultIdToElementDataMap"]
        .as_object()
        .unwrap();
    assert!(!elements.is_empty());
    for element in elements.values() {
        assert!(element["malopPriority"].is_string(), "{element}");
        assert!(element["simpleValues"].get("malopPriority").is_none());
    }
    let inbox: Value = rest(&s, &cookie, "/rest/detection/inbox", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let machine = &inbox["malops"][0]["machines"][0];
    assert!(
        machine["guid"].is_string() && machine.get("pylumId").is_none(),
        "{machine}"
    );
    let mmng: Value = rest(&s, &cookie, "/rest/mmng/v2/malops", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert!(mmng["data"]["data"][0]["machines"][0]["pylumId"].is_string());
}

/// A tenant whose API user has no investigation rights: `riposte sim --refuse-investigation`
/// (or the control API) answers every visualsearch query with a failure body, and
/// crimes/unified still answers; `--result-limit` cuts crimes/unified answers.
#[tokio::test]
async fn investigation_can_be_refused_and_answers_cut_at_the_result_limit() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: riposte_sim::SimArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let cli = Cli::try_parse_from([
        "riposte-sim",
        "--password-file",
        password.to_str().unwrap(),
        "--malops",
        "12",
        "--refuse-investigation",
        "--result-limit",
        "2",
    ])
    .unwrap();
    let s = Simulator::start(cli.sim.to_config().unwrap())
        .await
        .unwrap();
    let cookie = login(&s, PASSWORD).await.1.unwrap();
    let query =
        json!({"queryPath": [{"requestedType": "Machine", "isResult": true, "filters": []}]});
    let refused: Value = rest(
        &s,
        &cookie,
        "/rest/visualsearch/query/simple",
        query.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(refused["status"], "FAILURE");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("investigation")
    );
    let path = json!({"requestedType": "MalopProcess", "result": true, "filters": null});
    let unified: Value = rest(
        &s,
        &cookie,
        "/rest/crimes/unified",
        json!({"queryPath": [path]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        unified["data"]["resultIdToElementDataMap"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    assert!(unified["data"]["totalPossibleResults"].as_u64().unwrap() > 2);

    let allowed = json_of(http().post(format!("{}/sim/investigation/allow", s.base_url()))).await;
    assert_eq!(allowed["refuse_investigation"], false);
    let answer: Value = rest(&s, &cookie, "/rest/visualsearch/query/simple", query)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "SUCCESS");
}
