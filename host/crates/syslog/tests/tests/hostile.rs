//! Hostile and broken input: every message dropped with its reason, nothing trusted, the
//! connection kept where framing allows, and every bound enforced.

use crate::support::*;
use crate::vendor::*;
use riposte_syslog::{DropReason, Event, ListenerConfig, TryRecvError};
use tokio::io::AsyncWriteExt;

/// On one newline-framed connection: each kind of bad message is dropped and counted under
/// its own reason, and the connection still delivers the valid message that follows.
#[tokio::test]
async fn bad_messages_are_dropped_with_a_reason_and_the_stream_goes_on() {
    let config = ListenerConfig {
        max_message_bytes: 1024,
        ..config()
    };
    let (listener, mut hints) = start(&config).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let created = |cs1: &str| {
        format!("CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1={cs1}")
    };
    let mut input: Vec<u8> = Vec::new();
    let mut line = |bytes: &[u8]| {
        input.extend_from_slice(bytes);
        input.push(b'\n');
    };
    let cases: &[(&[u8], DropReason)] = &[
        (b"\xde\xad\xbe\xef\xff CEF:0|", DropReason::Binary),
        (
            b"CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1=\x01\x02",
            DropReason::Binary,
        ),
        (b"just some text", DropReason::NotCef),
        (
            b"<134>not a header CEF:0|Cybereason|Cybereason|1.0|1|Malop Created|5|",
            DropReason::MalformedSyslog,
        ),
        (
            b"CEF:0|Cybereason|Cybereason|1.0|1|Malop Cre",
            DropReason::MalformedCef,
        ),
        (
            b"CEF:7|Cybereason|Cybereason|1.0|1|Malop Created|5|cs1=11.1 cs1Label=MalopId",
            DropReason::MalformedCef,
        ),
        (
            b"CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs2=MalopProcess",
            DropReason::NoMalopId,
        ),
    ];
    for (bytes, _) in cases {
        line(bytes);
    }
    let bad_ids = [
        "11.-77805375073635565270000",
        "../../../etc/passwd",
        "11.1;DROP",
        "AAAA0ws7O-MUgDm",
        "${jndi:ldap://x}",
        "11.-7780537507363356527 AAAA0ws7O-MUgDmB",
    ];
    for bad in bad_ids {
        line(created(bad).as_bytes());
    }
    let oversized = format!("{} cs2={}", vendor_created(), "A".repeat(2000));
    line(oversized.as_bytes());
    line(vendor_machine_information().as_bytes());
    let _client = tcp_send(addr, &input).await;

    let hint = next_hint(&mut hints).await;
    assert_eq!(hint.malop_id.as_str(), MACHINE_ID);
    let total = cases.len() + bad_ids.len() + 2;
    let stats = wait_stats(&listener, "every line", |s| {
        s.count(Event::MessagesReceived) == total as u64
    })
    .await;
    for reason in [
        DropReason::Binary,
        DropReason::NotCef,
        DropReason::MalformedSyslog,
        DropReason::MalformedCef,
        DropReason::NoMalopId,
    ] {
        let expected = cases.iter().filter(|(_, r)| *r == reason).count() as u64;
        assert_eq!(stats.dropped(reason), expected, "{reason}");
    }
    assert_eq!(stats.dropped(DropReason::BadMalopId), bad_ids.len() as u64);
    assert_eq!(stats.dropped(DropReason::Oversized), 1);
    assert_eq!(stats.dropped_total(), total as u64 - 1);
    assert_eq!(
        hints.try_recv(),
        Err(TryRecvError::Empty),
        "nothing else became a hint"
    );
}

/// A Malop event whose attacker-chosen fields (a file name, a command line) carry a C1
/// control character, a byte that is not UTF-8 and, in an octet-counted frame, a raw newline
/// still names its Malop: the rest of the message is never used, and malware cannot keep its
/// own Malop off the fast path by naming a file oddly.
#[tokio::test]
async fn odd_bytes_in_an_events_other_fields_do_not_hide_its_malop() {
    let (listener, mut hints) = start(&config()).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let mut message = format!(
        "<134>1 2024-05-16T03:10:41Z cr-server cybereason - - - CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1={CREATED_ID} cs4Label=suspect cs4=evil"
    )
    .into_bytes();
    message.extend_from_slice(b"\xc2\x85\xff\nname.exe cs5=a\x07b");
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(&message);
    let _client = tcp_send(addr, &framed).await;
    let hint = next_hint(&mut hints).await;
    assert_eq!(hint.malop_id.as_str(), CREATED_ID);
    assert_eq!(listener.stats().dropped_total(), 0);
}

/// An octet count announcing more than the limit: its bytes are skipped as they arrive, none
/// kept, and the connection goes on with the next frame. Digits that are no count (a header
/// without `<PRI>` starting with its timestamp) start a newline-framed message.
#[tokio::test]
async fn an_oversized_octet_counted_message_is_skipped_and_the_stream_goes_on() {
    let config = ListenerConfig {
        max_message_bytes: 1024,
        ..config()
    };
    let (listener, mut hints) = start(&config).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let filler = format!("<134>{}", "x".repeat(200_000));
    let created = vendor_created();
    let mut input = format!("{} {filler}{} {created}", filler.len(), created.len()).into_bytes();
    input.extend_from_slice(b"12x not a count\n2024-05-16T03:10:41Z cr-server ");
    input.extend_from_slice(vendor_machine_information().as_bytes());
    input.push(b'\n');
    let _client = tcp_send(addr, &input).await;
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CREATED_ID);
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), MACHINE_ID);
    let stats = wait_stats(&listener, "four messages", |s| {
        s.count(Event::MessagesReceived) == 4
    })
    .await;
    assert_eq!(stats.dropped(DropReason::Oversized), 1);
    assert_eq!(stats.dropped(DropReason::NotCef), 1);
    assert_eq!(stats.dropped_total(), 2);
}

/// A connection that ends while an oversized message is skipped: that message was counted
/// once, as oversized, and is not counted again as truncated.
#[tokio::test]
async fn a_message_being_skipped_is_counted_once() {
    let config = ListenerConfig {
        max_message_bytes: 1024,
        ..config()
    };
    let (listener, _hints) = start(&config).await;
    let addr = listener.local_addrs().tcp.unwrap();
    for start in ["5000 <134>", "<134>"] {
        let mut partial = start.as_bytes().to_vec();
        partial.extend_from_slice(&[b'x'; 2000]);
        let mut client = tcp_send(addr, &partial).await;
        client.shutdown().await.unwrap();
        closed_by_peer(&mut client).await;
    }
    let stats = wait_stats(&listener, "both closes", |s| {
        s.count(Event::ConnectionsClosed) == 2
    })
    .await;
    assert_eq!(stats.count(Event::MessagesReceived), 2);
    assert_eq!(stats.dropped(DropReason::Oversized), 2);
    assert_eq!(stats.dropped(DropReason::Truncated), 0);
}

/// A frame cut short by the end of the connection is counted as truncated, not parsed.
#[tokio::test]
async fn a_frame_cut_by_the_end_of_the_connection_is_truncated() {
    let (listener, mut hints) = start(&config()).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let whole = vendor_created();
    for partial in [
        format!("{} {}", whole.len(), &whole[..whole.len() - 5]),
        // A newline-framed message without its LF could be cut in the middle of the id.
        whole[..whole.find("cs2Label").unwrap() - 5].to_owned(),
    ] {
        let mut client = tcp_send(addr, partial.as_bytes()).await;
        client.shutdown().await.unwrap();
        closed_by_peer(&mut client).await;
    }
    let stats = wait_stats(&listener, "two truncations", |s| {
        s.dropped(DropReason::Truncated) == 2
    })
    .await;
    assert_eq!(stats.count(Event::MalopEvents), 0);
    assert_eq!(hints.try_recv(), Err(TryRecvError::Empty));
}

/// Writes `bytes` every 100 ms until the listener closes the connection, for at most 10 s.
async fn trickle_until_closed(stream: &mut tokio::net::TcpStream, bytes: &[u8], who: &str) {
    for _ in 0..100 {
        if stream.write_all(bytes).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{who} was not cut off within 10 s");
}

/// A connection that sends nothing is closed after the idle timeout; one that starts a frame
/// and never finishes it (a slow sender) after the message timeout, even while it trickles;
/// so is a connection to the TLS port that never completes its handshake.
#[tokio::test]
async fn idle_and_slow_connections_time_out() {
    let pki = pki();
    let config = ListenerConfig {
        idle_timeout_secs: 1,
        message_timeout_secs: 1,
        tls: Some(riposte_syslog::TlsListenerConfig {
            listen: loopback(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: None,
        }),
        ..config()
    };
    let (listener, _hints) = start(&config).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let mut idle = tcp_send(addr, b"").await;
    let mut no_handshake = tcp_send(listener.local_addrs().tls.unwrap(), b"").await;
    let mut slow = tcp_send(addr, b"<134>May 16 ").await;
    trickle_until_closed(&mut slow, b"x", "the slow sender").await;
    closed_by_peer(&mut idle).await;
    closed_by_peer(&mut no_handshake).await;
    let stats = wait_stats(&listener, "the three timeouts", |s| {
        s.count(Event::ConnectionsIdleTimeout) == 1 && s.count(Event::ConnectionsSlowTimeout) == 2
    })
    .await;
    assert_eq!(stats.dropped(DropReason::Truncated), 1);
}

/// Separators alone (a newline now and then, no message) do not keep a connection open past
/// the idle timeout: otherwise a few such connections per source hold every place.
#[tokio::test]
async fn separators_alone_do_not_keep_a_connection_open() {
    let config = ListenerConfig {
        idle_timeout_secs: 1,
        ..config()
    };
    let (listener, _hints) = start(&config).await;
    let mut idle = tcp_send(listener.local_addrs().tcp.unwrap(), b"\n").await;
    trickle_until_closed(&mut idle, b"\n", "a connection sending only newlines").await;
    wait_stats(&listener, "the idle timeout", |s| {
        s.count(Event::ConnectionsIdleTimeout) == 1
    })
    .await;
}

/// Sources outside `allowed_sources` are refused: connections at accept, datagrams one by one.
#[tokio::test]
async fn the_allowlist_refuses_other_sources() {
    let refused = ListenerConfig {
        allowed_sources: vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ],
        ..config()
    };
    let (listener, mut hints) = start(&refused).await;
    let addrs = listener.local_addrs();
    let mut client = tcp_send(
        addrs.tcp.unwrap(),
        format!("{}\n", vendor_created()).as_bytes(),
    )
    .await;
    closed_by_peer(&mut client).await;
    udp_send(addrs.udp.unwrap(), &[vendor_created().as_bytes()]).await;
    let stats = wait_stats(&listener, "both refusals", |s| {
        s.count(Event::ConnectionsRefusedSource) == 1 && s.count(Event::DatagramsRefusedSource) == 1
    })
    .await;
    assert_eq!(stats.count(Event::MessagesReceived), 0);
    assert_eq!(hints.try_recv(), Err(TryRecvError::Empty));

    let allowed = ListenerConfig {
        allowed_sources: vec!["192.0.2.7".parse().unwrap(), "127.0.0.1".parse().unwrap()],
        ..config()
    };
    let (listener, mut hints) = start(&allowed).await;
    let _client = tcp_send(
        listener.local_addrs().tcp.unwrap(),
        format!("{}\n", vendor_created()).as_bytes(),
    )
    .await;
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CREATED_ID);
}

/// Connections beyond `max_connections_per_source` (and `max_connections`) are refused at
/// once; closing one makes room.
#[tokio::test]
async fn connection_limits() {
    let config = ListenerConfig {
        max_connections: 3,
        max_connections_per_source: 2,
        ..config()
    };
    let (listener, mut hints) = start(&config).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let first = tcp_send(addr, b"").await;
    let _second = tcp_send(addr, b"").await;
    wait_stats(&listener, "two accepted", |s| {
        s.count(Event::ConnectionsAccepted) == 2
    })
    .await;
    let mut third = tcp_send(addr, b"").await;
    closed_by_peer(&mut third).await;
    assert_eq!(listener.stats().count(Event::ConnectionsRefusedLimit), 1);
    drop(first);
    wait_stats(&listener, "the close", |s| {
        s.count(Event::ConnectionsClosed) == 1
    })
    .await;
    let _client = tcp_send(addr, format!("{}\n", vendor_created()).as_bytes()).await;
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CREATED_ID);
    assert_eq!(listener.stats().count(Event::ConnectionsRefusedLimit), 1);
}

/// With every place taken by one source's connections, a connection from another source
/// takes the place of the one silent the longest; a source as large as any other does not.
#[tokio::test]
async fn a_new_source_takes_the_place_of_a_silent_connection() {
    let config = ListenerConfig {
        max_connections: 2,
        max_connections_per_source: 2,
        ..config()
    };
    let (listener, mut hints) = start(&config).await;
    let addr = listener.local_addrs().tcp.unwrap();
    let mut silent = tcp_send(addr, b"").await;
    let _talking = tcp_send(addr, format!("{}\n", vendor_created()).as_bytes()).await;
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), CREATED_ID);

    let from = |ip: &str| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        socket.connect(addr)
    };
    let mut server = from("127.0.0.2").await.unwrap();
    closed_by_peer(&mut silent).await;
    let stats = wait_stats(&listener, "the eviction", |s| {
        s.count(Event::ConnectionsClosed) == 1
    })
    .await;
    assert_eq!(stats.count(Event::ConnectionsEvicted), 1);
    assert_eq!(stats.count(Event::ConnectionsRefusedLimit), 0);
    server
        .write_all(format!("{}\n", vendor_machine_information()).as_bytes())
        .await
        .unwrap();
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), MACHINE_ID);

    // One connection each now: a third source is refused, nobody is evicted.
    let mut third = from("127.0.0.3").await.unwrap();
    closed_by_peer(&mut third).await;
    let stats = listener.stats();
    assert_eq!(stats.count(Event::ConnectionsRefusedLimit), 1);
    assert_eq!(stats.count(Event::ConnectionsEvicted), 1);
}

/// Past its burst, a source's messages are dropped as rate-limited (the others still count
/// as received); its connections keep a rate of their own.
#[tokio::test]
async fn per_source_rate_limit() {
    let config = ListenerConfig {
        rate_per_source: 1,
        burst_per_source: 5,
        ..config()
    };
    let (listener, _hints) = start(&config).await;
    let addr = listener.local_addrs().udp.unwrap();
    let lines: Vec<String> = (0..30)
        .map(|i| {
            format!(
                "CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1=11.{i}"
            )
        })
        .collect();
    let datagrams: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    udp_send(addr, &datagrams).await;
    let stats = wait_stats(&listener, "thirty datagrams", |s| {
        s.count(Event::MessagesReceived) == 30
    })
    .await;
    let limited = stats.dropped(DropReason::RateLimited);
    assert!(
        (20..=25).contains(&limited),
        "{limited} rate-limited of 30 with a burst of 5"
    );
    assert_eq!(stats.count(Event::MalopEvents) + limited, 30);
    // Datagrams (whose source anyone can forge) do not use up the rate of the same
    // address's connection.
    let tcp = listener.local_addrs().tcp.unwrap();
    let _client = tcp_send(tcp, format!("{}\n", vendor_created()).as_bytes()).await;
    let stats = wait_stats(&listener, "the message over TCP", |s| {
        s.count(Event::MessagesReceived) == 31
    })
    .await;
    assert_eq!(stats.dropped(DropReason::RateLimited), limited);
}
