//! Each transport and framing end to end over loopback, with each header style and the
//! vendor's message shapes.

use crate::support::*;
use crate::vendor::*;
use riposte_syslog::{DropReason, Event, ListenerConfig, MalopEvent, TlsListenerConfig};
use tokio::io::AsyncWriteExt;

/// Newline framing over TCP: the vendor's bare CEF:1 lines, a forwarder line behind an RFC
/// 3164 prefix, and a user-action line (ignored).
#[tokio::test]
async fn tcp_newline_framing_with_bare_and_rfc3164_headers() {
    let (listener, mut hints) = start(&config()).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let input = format!(
        "{}\n{}\r\n{}\n<134>May 16 03:10:41 cr-server cybereason {}\n",
        vendor_created(),
        vendor_machine_information(),
        user_action_login(),
        forwarder_connection_added()
    );
    let client = tcp_send(addr, input.as_bytes()).await;
    let client_addr = client.local_addr().unwrap();
    let expected = [
        (CREATED_ID, MalopEvent::Created),
        (MACHINE_ID, MalopEvent::MachineInformation),
        (CONNECTION_ID, MalopEvent::ConnectionAdded),
    ];
    for (malop, event) in expected {
        let hint = next_hint(&mut hints).await;
        assert_eq!((hint.malop_id.as_str(), hint.event), (malop, event));
        assert_eq!(
            hint.source, client_addr,
            "the hint names the peer it came from"
        );
        assert!(hint.received_at.elapsed().unwrap() < DEADLINE);
    }
    let stats = wait_stats(&listener, "four messages", |s| {
        s.count(Event::MessagesReceived) == 4
    })
    .await;
    assert_eq!(stats.count(Event::NotMalopEvents), 1);
    assert_eq!(stats.dropped_total(), 0);
}

/// Octet counting over TCP with RFC 5424 headers, mixed with newline framing in the same
/// connection (detected per message), split across writes at awkward places.
#[tokio::test]
async fn tcp_octet_counting_and_mixed_framing() {
    let (listener, mut hints) = start(&config()).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let first = format!(
        "<134>1 2024-05-16T03:10:41.123Z cr-server cybereason - - - {}",
        vendor_created()
    );
    let second = format!(
        "<134>1 2024-05-16T03:10:42Z cr-server cybereason 77 MALOP - \u{feff}{}",
        forwarder_process_added()
    );
    let third = format!("{}\n", forwarder_connection_added());
    let mut input = format!("{} {first}{} {second}", first.len(), second.len()).into_bytes();
    input.extend_from_slice(third.as_bytes());
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    for chunk in input.chunks(7) {
        client.write_all(chunk).await.unwrap();
    }
    let got: Vec<_> = [
        next_hint(&mut hints).await,
        next_hint(&mut hints).await,
        next_hint(&mut hints).await,
    ]
    .into_iter()
    .map(|h| (h.malop_id.into_string(), h.event))
    .collect();
    assert_eq!(
        got,
        vec![
            (CREATED_ID.to_owned(), MalopEvent::Created),
            (INBOX_ID.to_owned(), MalopEvent::Other),
            (CONNECTION_ID.to_owned(), MalopEvent::ConnectionAdded),
        ]
    );
    assert_eq!(listener.stats().dropped_total(), 0);
}

/// UDP: one message per datagram, any header; an oversized datagram is dropped.
#[tokio::test]
async fn udp_datagrams() {
    let config = ListenerConfig {
        max_message_bytes: 1024,
        ..config()
    };
    let (listener, mut hints) = start(&config).await;
    let addr = listener.local_addrs().udp.unwrap();
    let rfc5424 = format!(
        "<134>1 2024-05-16T03:10:41Z cr-server cybereason - - - {}\n",
        forwarder_connection_added()
    );
    let oversized = format!("{}{}", vendor_machine_information(), " x=y".repeat(300));
    udp_send(
        addr,
        &[
            vendor_created().as_bytes(),
            oversized.as_bytes(),
            rfc5424.as_bytes(),
        ],
    )
    .await;
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CREATED_ID);
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CONNECTION_ID);
    let stats = wait_stats(&listener, "three datagrams", |s| {
        s.count(Event::MessagesReceived) == 3
    })
    .await;
    assert_eq!(stats.dropped(DropReason::Oversized), 1);
    assert_eq!(stats.dropped_total(), 1);
}

fn tls_config(pki: &Pki, client_ca: Option<&std::path::Path>) -> ListenerConfig {
    ListenerConfig {
        tls: Some(TlsListenerConfig {
            listen: loopback(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: client_ca.map(ToOwned::to_owned),
        }),
        ..config()
    }
}

/// TLS without client certificates: octet-counted RFC 5424 and newline-framed bare CEF.
#[tokio::test]
async fn tls_server_only() {
    let pki = pki();
    let (listener, mut hints) = start(&tls_config(&pki, None)).await;
    let addr = listener.local_addrs().tls.unwrap();
    let mut client = tls_connect(addr, &pki.ca, None).await.unwrap();
    let message = format!(
        "<134>1 2024-05-16T03:10:41Z cr-server cybereason - - - {}",
        vendor_created()
    );
    let input = format!(
        "{} {message}{}\n",
        message.len(),
        forwarder_connection_added()
    );
    client.write_all(input.as_bytes()).await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CREATED_ID);
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CONNECTION_ID);
    // Plain text on the TLS port is a failed handshake, not a message.
    let mut plain = tcp_send(
        addr,
        format!("{}\n", vendor_machine_information()).as_bytes(),
    )
    .await;
    closed_by_peer(&mut plain).await;
    let stats = wait_stats(&listener, "the failed handshake", |s| {
        s.count(Event::TlsHandshakeFailures) == 1
    })
    .await;
    assert_eq!(stats.count(Event::MessagesReceived), 2);
}

/// With `client_ca`, a client certificate from that CA is required: one from another CA,
/// or none, is refused and nothing it sends becomes a hint.
#[tokio::test]
async fn tls_client_certificate_required() {
    let pki = pki();
    let (listener, mut hints) = start(&tls_config(&pki, Some(&pki.ca))).await;
    let addr = listener.local_addrs().tls.unwrap();
    let line = format!("{}\n", vendor_created());

    for client_auth in [
        None,
        Some((pki.rogue_cert.as_path(), pki.rogue_key.as_path())),
    ] {
        // With TLS 1.3 the client may finish its side before the server refuses it.
        if let Ok(mut refused) = tls_connect(addr, &pki.ca, client_auth).await {
            let _ = refused.write_all(line.as_bytes()).await;
            let _ = refused.flush().await;
            closed_by_peer(&mut refused).await;
        }
    }
    wait_stats(&listener, "two refused handshakes", |s| {
        s.count(Event::TlsHandshakeFailures) == 2
    })
    .await;

    let mut good = tls_connect(addr, &pki.ca, Some((&pki.client_cert, &pki.client_key)))
        .await
        .unwrap();
    good.write_all(format!("{}\n", vendor_machine_information()).as_bytes())
        .await
        .unwrap();
    good.flush().await.unwrap();
    let hint = next_hint(&mut hints).await;
    assert_eq!(
        hint.malop_id.as_str(),
        MACHINE_ID,
        "only the authenticated client's message"
    );
    let stats = listener.stats();
    assert_eq!(stats.count(Event::MessagesReceived), 1);
    assert_eq!(stats.count(Event::HintsDelivered), 1);
}

/// Starting fails clearly on bad TLS material, on a bad configuration, and with nothing to
/// listen on.
#[tokio::test]
async fn start_errors_are_clear() {
    let pki = pki();
    let mut bad_key = tls_config(&pki, None);
    bad_key.tls.as_mut().unwrap().key = pki.server_cert.clone();
    let err = riposte_syslog::SyslogListener::start(&bad_key)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("private key") && err.contains("server.pem"),
        "{err}"
    );

    let mut missing = tls_config(&pki, None);
    missing.tls.as_mut().unwrap().cert = pki.server_cert.with_file_name("nope.pem");
    let err = riposte_syslog::SyslogListener::start(&missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.pem"), "{err}");

    let invalid = ListenerConfig {
        max_message_bytes: 10,
        ..config()
    };
    let err = riposte_syslog::SyslogListener::start(&invalid)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_message_bytes: 10 is out of range"),
        "{err}"
    );

    let nothing = ListenerConfig::default();
    let err = riposte_syslog::SyslogListener::start(&nothing)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing to listen on"), "{err}");

    let (first, _hints) = start(&config()).await;
    let taken = ListenerConfig {
        tcp_listen: first.local_addrs().tcp,
        ..config()
    };
    let err = riposte_syslog::SyslogListener::start(&taken)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot listen for syslog over tcp"), "{err}");
}

/// Shutting down closes the hint stream after the ready hints.
#[tokio::test]
async fn shutdown_ends_the_stream() {
    let (listener, mut hints) = start(&config()).await;
    let addr = listener.local_addrs().udp.unwrap();
    udp_send(addr, &[vendor_created().as_bytes()]).await;
    wait_stats(&listener, "the event", |s| s.count(Event::MalopEvents) == 1).await;
    listener.shutdown().await;
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CREATED_ID);
    assert_eq!(hints.recv().await, None);
}
