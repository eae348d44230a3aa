//! The `[service.syslog]` section and a sender section in TOML: defaults, every key,
//! unknown keys and bad values with clear messages.

use riposte_syslog::config::defaults;
use riposte_syslog::{ListenerConfig, SenderConfig, SenderTransport};
use std::path::Path;

fn listener(text: &str) -> Result<ListenerConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

fn problems(config: &ListenerConfig) -> Vec<String> {
    config
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn off_by_default_with_the_documented_defaults() {
    let config = listener("").unwrap();
    assert_eq!(config, ListenerConfig::default());
    assert!(!config.enabled);
    assert!(!config.has_transport());
    assert_eq!(config.max_message_bytes, defaults::MAX_MESSAGE_BYTES);
    assert_eq!(config.coalesce_interval_ms, defaults::COALESCE_INTERVAL_MS);
    assert!(config.allowed_sources.is_empty());
    assert!(
        config.allows("203.0.113.9".parse().unwrap()),
        "empty allowlist: any source"
    );
    config.validate().unwrap();
}

#[test]
fn every_key_parses() {
    let mut config = listener(
        r#"
        enabled = true
        tcp_listen = "0.0.0.0:514"
        udp_listen = "[::]:514"
        allowed_sources = ["10.20.0.0/16", "192.0.2.7", "2001:db8::/32"]
        max_message_bytes = 16384
        max_connections = 32
        max_connections_per_source = 4
        idle_timeout_secs = 600
        message_timeout_secs = 5
        rate_per_source = 100
        burst_per_source = 400
        max_sources = 64
        coalesce_interval_ms = 2000
        max_tracked_malops = 5000

        [tls]
        listen = "0.0.0.0:6514"
        cert = "tls/server.pem"
        key = "tls/server.key"
        client_ca = "/etc/riposte/cr-ca.pem"
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    config.resolve_paths(Path::new("/etc/riposte"));
    let tls = config.tls.as_ref().unwrap();
    assert_eq!(tls.cert, Path::new("/etc/riposte/tls/server.pem"));
    assert_eq!(
        tls.client_ca.as_deref(),
        Some(Path::new("/etc/riposte/cr-ca.pem"))
    );
    assert!(config.allows("10.20.3.4".parse().unwrap()));
    assert!(config.allows("::ffff:192.0.2.7".parse().unwrap()));
    assert!(!config.allows("10.21.0.1".parse().unwrap()));
    // It serialises back to the same section.
    let text = toml::to_string(&config).unwrap();
    assert_eq!(listener(&text).unwrap(), config);
}

#[test]
fn mistakes_are_named() {
    let err = listener("enabeld = true").unwrap_err();
    assert!(err.contains("unknown field `enabeld`"), "{err}");
    let err = listener(r#"allowed_sources = ["10.0.0.0/8", "cr.example.com"]"#).unwrap_err();
    assert!(
        err.contains("`cr.example.com` is not an IP address or a CIDR network"),
        "{err}"
    );
    let err = listener(r#"tcp_listen = "localhost""#).unwrap_err();
    assert!(err.contains("tcp_listen"), "{err}");
    let err = listener("[tls]\nlisten = \"0.0.0.0:6514\"\ncert = \"c.pem\"").unwrap_err();
    assert!(err.contains("missing field `key`"), "{err}");

    let config = ListenerConfig {
        enabled: true,
        max_message_bytes: 100_000,
        max_connections: 2,
        max_connections_per_source: 3,
        coalesce_interval_ms: 0,
        rate_per_source: 0,
        ..ListenerConfig::default()
    };
    assert_eq!(
        problems(&config),
        vec![
            "the syslog listener is enabled but listens nowhere: set tcp_listen, udp_listen or [tls] listen",
            "max_message_bytes: 100000 is out of range: expected 480 to 65507",
            "max_connections_per_source: 3 is out of range: expected 1 to 2",
            "rate_per_source: 0 is out of range: expected 1 to 1000000",
            "coalesce_interval_ms: 0 is out of range: expected 1 to 3600000",
        ]
    );
    let same_port = ListenerConfig {
        tcp_listen: Some("0.0.0.0:6514".parse().unwrap()),
        tls: Some(riposte_syslog::TlsListenerConfig {
            listen: "0.0.0.0:6514".parse().unwrap(),
            cert: "c".into(),
            key: "".into(),
            client_ca: None,
        }),
        ..ListenerConfig::default()
    };
    assert_eq!(
        problems(&same_port),
        vec![
            "tls.listen: 0.0.0.0:6514 is also tcp_listen: use two ports",
            "tls.key: empty path",
        ]
    );
}

#[test]
fn sender_sections() {
    let config: SenderConfig = toml::from_str(
        r#"
        transport = "tls"
        address = "siem.example.com:6514"
        ca_file = "siem-ca.pem"
        framing = "newline"
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.transport, SenderTransport::Tls);
    assert_eq!(config.queue_capacity, defaults::SENDER_QUEUE_CAPACITY);

    let bad = SenderConfig {
        client_key: Some("k.pem".into()),
        backoff_min_ms: 500,
        backoff_max_ms: 100,
        ..SenderConfig::new(SenderTransport::Tls, "siem.example.com")
    };
    let found: Vec<String> = bad
        .validate()
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        vec![
            "address: `siem.example.com` is not host:port (e.g. siem.example.com:6514 or [2001:db8::1]:514)",
            "ca_file: required for transport = \"tls\": the CA file the collector's certificate must chain to",
            "client_key: client_cert and client_key go together",
            "backoff_max_ms: 100 is out of range: expected 500 to 3600000",
        ]
    );
    let udp_with_ca = SenderConfig {
        ca_file: Some("x".into()),
        ..SenderConfig::new(SenderTransport::Udp, "[::1]:514")
    };
    let found = udp_with_ca.validate().unwrap_err();
    assert_eq!(
        found[0].to_string(),
        "ca_file: only used with transport = \"tls\""
    );
    let err = toml::from_str::<SenderConfig>("transport = \"tcp\"\naddress = \"a:1\"\nretries = 3")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `retries`"), "{err}");
}
