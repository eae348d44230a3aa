//! The Prometheus endpoint, scraped over 127.0.0.1 before and after a service cycle against
//! the simulator: every series is exposed, and invocations, traps, decisions, actions, poll
//! latency and budgets left moved as the cycle says they should.

use riposte_e2e::gate_support::{Plugin, World};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` over a plain TCP connection; the response's content type and body.
async fn scrape(addr: SocketAddr) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the metrics endpoint accepts connections");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("the request is sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("the response is read");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("an HTTP response with a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .expect("a content type");
    (content_type, body.to_owned())
}

/// `series{labels} value` lines, by series (with labels).
fn samples(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of the samples whose series starts with `name{` (or is `name`) and has all `labels`.
fn sum(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(series, _)| {
            (series.as_str() == name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_moves_every_series_of_the_endpoint() {
    let world = World::new(4).await;
    let server = riposte_metrics::serve(
        "127.0.0.1:0".parse().expect("an address"),
        world.metrics.clone(),
    )
    .await
    .expect("the endpoint starts on loopback");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback());
    let (_, before) = scrape(addr).await;
    let before = samples(&before);

    let plugins = [
        Plugin::new("metrics-containment", "ransomware-containment")
            .grant(&["get-malop", "isolate", "remediate", "remediation-status"])
            .remediation(&["kill-process"])
            .budget("isolate", 50, 3600),
        Plugin::new("metrics-feed", "reputation-feed")
            .shadow()
            .grant(&["get-malop", "set-reputation"]),
        // Granted nothing: every action it asks for is denied.
        Plugin::new("metrics-cleanup", "cleanup"),
        Plugin::hostile("metrics-hostile", "panic"),
    ];
    let global = "[[global_budgets]]\naction = \"any\"\nmax = 1000\nwindow_secs = 86400\n";
    let service = world
        .start(global, &plugins)
        .await
        .expect("the service starts");
    let report = service.run_cycle().await.expect("the cycle runs");
    assert!(report.invocations > 0 && report.traps > 0, "{report:?}");

    let (content_type, body) = scrape(addr).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    for family in [
        "riposte_invocations",
        "riposte_traps",
        "riposte_decisions",
        "riposte_actions",
        "riposte_poll_duration_seconds",
        "riposte_cycles",
        "riposte_budget_remaining",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} ")),
            "{family} is not exposed:\n{body}"
        );
    }
    let after = samples(&body);
    // The endpoint serves this world's own handle: exactly its one cycle, and another
    // world's handle has counted nothing.
    assert_eq!(sum(&after, "riposte_cycles_total", &[]), 1.0);
    let other = World::new(0).await;
    let untouched = samples(&other.metrics.render());
    assert_eq!(sum(&untouched, "riposte_cycles_total", &[]), 0.0);
    assert_eq!(sum(&untouched, "riposte_invocations_total", &[]), 0.0);
    let moved =
        |name: &str, labels: &[&str]| sum(&after, name, labels) - sum(&before, name, labels);

    // Invocations, by plugin and outcome; the hostile plugin's traps by reason.
    let invocations = report.invocations as f64;
    assert_eq!(moved("riposte_invocations_total", &[]), invocations);
    assert!(
        moved(
            "riposte_invocations_total",
            &["plugin=\"metrics-containment\"", "outcome=\"completed\""]
        ) >= 1.0
    );
    assert_eq!(moved("riposte_traps_total", &[]), report.traps as f64);
    assert!(
        moved(
            "riposte_traps_total",
            &["plugin=\"metrics-hostile\"", "reason=\"panic\""]
        ) >= 1.0,
        "{body}"
    );
    assert!(moved("riposte_invocation_fuel_used_total", &[]) > 0.0);

    // Decisions by kind: allowed (containment), shadowed (feed), denied (cleanup).
    for (plugin, decision) in [
        ("metrics-containment", "allow"),
        ("metrics-feed", "shadow"),
        ("metrics-cleanup", "deny"),
    ] {
        assert!(
            moved(
                "riposte_decisions_total",
                &[
                    &format!("plugin=\"{plugin}\""),
                    &format!("decision=\"{decision}\"")
                ]
            ) >= 1.0,
            "no {decision} decision for {plugin}:\n{body}"
        );
    }
    // Actions by outcome: containment's isolations were carried out.
    assert!(
        moved(
            "riposte_actions_total",
            &["plugin=\"metrics-containment\"", "action=\"isolate\""]
        ) >= 1.0,
        "{body}"
    );
    assert_eq!(
        moved("riposte_actions_total", &["plugin=\"metrics-feed\""]),
        0.0,
        "shadowed actions are not executed"
    );

    // Poll latency: one poll per element kind.
    assert_eq!(moved("riposte_poll_duration_seconds_count", &[]), 2.0);
    assert!(moved("riposte_poll_duration_seconds_sum", &[]) > 0.0);
    assert_eq!(moved("riposte_cycles_total", &[]), 1.0);

    // Budgets left after the cycle: the plugin's isolate budget is spent by the machines
    // it isolated, the global one by every executed action.
    let plugin_left = sum(
        &after,
        "riposte_budget_remaining",
        &[
            "scope=\"metrics-containment\"",
            "action=\"isolate\"",
            "window_secs=\"3600\"",
        ],
    );
    let plugin_max = sum(
        &after,
        "riposte_budget_max",
        &["scope=\"metrics-containment\"", "action=\"isolate\""],
    );
    assert_eq!(plugin_max, 50.0);
    assert!((0.0..50.0).contains(&plugin_left), "{body}");
    let global_left = sum(
        &after,
        "riposte_budget_remaining",
        &["scope=\"global\"", "action=\"any\""],
    );
    assert!(global_left < 1000.0, "{body}");

    drop(server);
}
