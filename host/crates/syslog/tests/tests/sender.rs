//! The formatter and sender: round trips into the listener over every transport, audit
//! records to a collector across an outage, TLS verification, and a bounded queue.

use crate::support::*;
use bytes::BytesMut;
use riposte_syslog::format::{
    self, AuditRecord, CefMalopEvent, CefStyle, Facility, Origin, Priority, RecordPayload, Severity,
};
use riposte_syslog::framing::{Decoded, FrameDecoder};
use riposte_syslog::{
    Framing, ListenerConfig, MalopEvent, OutgoingMessage, SendError, SenderConfig, SenderTransport,
    SyslogSender, TlsListenerConfig,
};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const PRIORITY: Priority = Priority::new(Facility::Local0, Severity::Informational);

fn origin() -> Origin {
    Origin::new("cr-server", "cybereason")
}

/// The simulator's path: a CEF Malop event in each header style, with no header, an RFC
/// 3164 or an RFC 5424 header, through a sender on each transport and framing, into the
/// listener; each arrives as the hint for the id and event sent.
#[tokio::test]
async fn formatter_to_sender_to_listener_round_trips() {
    let pki = pki();
    let config = ListenerConfig {
        tls: Some(TlsListenerConfig {
            listen: loopback(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: Some(pki.ca.clone()),
        }),
        ..config()
    };
    let (listener, mut hints) = start(&config).await;
    let addrs = listener.local_addrs();
    let tls = SenderConfig {
        server_name: Some("localhost".into()),
        ca_file: Some(pki.ca.clone()),
        client_cert: Some(pki.client_cert.clone()),
        client_key: Some(pki.client_key.clone()),
        ..SenderConfig::new(SenderTransport::Tls, addrs.tls.unwrap().to_string())
    };
    let senders = [
        SenderConfig::new(SenderTransport::Tcp, addrs.tcp.unwrap().to_string()),
        SenderConfig {
            framing: Framing::Newline,
            ..SenderConfig::new(SenderTransport::Tcp, addrs.tcp.unwrap().to_string())
        },
        tls,
        SenderConfig::new(SenderTransport::Udp, addrs.udp.unwrap().to_string()),
    ];
    let mut n = 0u64;
    for sender_config in &senders {
        let sender = SyslogSender::start(sender_config).unwrap();
        for style in [CefStyle::Vendor, CefStyle::Forwarder] {
            for header in 0..3 {
                n += 1;
                let malop = id(&format!("11.-{n}"));
                let event = MalopEvent::ALL[n as usize % MalopEvent::ALL.len()];
                let cef = CefMalopEvent::new(malop.clone(), event, style, SystemTime::now())
                    .with_field("cs5Label", "malopKeySuspicion")
                    .unwrap()
                    .with_field("cs5", "Credential Theft = Malop | x\\y")
                    .unwrap()
                    .to_cef();
                let text = match header {
                    0 => cef,
                    1 => format::rfc3164(PRIORITY, SystemTime::now(), &origin(), &cef),
                    _ => format::rfc5424(PRIORITY, SystemTime::now(), &origin(), "MALOP", &cef),
                };
                sender.send(OutgoingMessage::new(text)).await.unwrap();
                let hint = next_hint(&mut hints).await;
                assert_eq!(
                    (hint.malop_id, hint.event),
                    (malop, event),
                    "{sender_config:?} {style:?} header {header}"
                );
            }
        }
        assert!(sender.shutdown(DEADLINE).await, "the queue drains");
    }
    assert_eq!(listener.stats().dropped_total(), 0);
}

/// A test collector: accepts one connection at a time and decodes octet-counted frames into
/// audit records.
async fn collect(listener: &TcpListener, count: usize) -> Vec<AuditRecord> {
    let (mut stream, _) = tokio::time::timeout(DEADLINE, listener.accept())
        .await
        .expect("the sender connects")
        .unwrap();
    read_records(&mut stream, count).await
}

async fn read_records(stream: &mut TcpStream, count: usize) -> Vec<AuditRecord> {
    let mut decoder = FrameDecoder::new(65_507);
    let mut buf = BytesMut::new();
    let mut records = Vec::new();
    while records.len() < count {
        match decoder.decode(&mut buf) {
            Decoded::Frame(frame) => records
                .push(AuditRecord::from_syslog_json(std::str::from_utf8(&frame).unwrap()).unwrap()),
            Decoded::NeedMore => {
                let n = tokio::time::timeout(DEADLINE, stream.read_buf(&mut buf))
                    .await
                    .expect("records within the deadline")
                    .unwrap();
                assert!(n > 0, "the sender closed after {} records", records.len());
            }
            other => panic!("{other:?}"),
        }
    }
    records
}

fn record(seq: u64) -> OutgoingMessage {
    let mut fields = serde_json::Map::new();
    fields.insert("plugin".into(), "ransomware-isolate".into());
    fields.insert("decision".into(), "allowed".into());
    AuditRecord {
        seq,
        chain_hash: format!("{seq:064x}"),
        time: SystemTime::now(),
        kind: "action.executed".into(),
        fields,
    }
    .to_syslog(
        RecordPayload::Json,
        Priority::new(Facility::Audit, Severity::Notice),
        &origin(),
    )
    .unwrap()
}

async fn wait_written(sender: &SyslogSender, seq: u64) {
    let mut written = sender.written();
    tokio::time::timeout(DEADLINE, written.wait_for(|w| *w == Some(seq)))
        .await
        .expect("written within the deadline")
        .unwrap();
}

/// Audit records reach the collector in order with their sequence numbers and chain hashes;
/// when the collector goes away the sender notices, keeps what is queued, retries with
/// backoff, and delivers everything once the collector is back on the same address.
#[tokio::test]
async fn the_sender_reconnects_after_the_collector_comes_back() {
    let collector = TcpListener::bind(loopback()).await.unwrap();
    let addr: SocketAddr = collector.local_addr().unwrap();
    let config = SenderConfig {
        backoff_min_ms: 20,
        backoff_max_ms: 200,
        ..SenderConfig::new(SenderTransport::Tcp, addr.to_string())
    };
    let sender = SyslogSender::start(&config).unwrap();
    for seq in 1..=5 {
        sender.try_send(record(seq)).unwrap();
    }
    let (mut stream, _) = tokio::time::timeout(DEADLINE, collector.accept())
        .await
        .unwrap()
        .unwrap();
    let first = read_records(&mut stream, 5).await;
    assert_eq!(
        first.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(first[2].chain_hash, format!("{:064x}", 3));
    wait_written(&sender, 5).await;

    // The collector goes away: the connection and the listening socket.
    drop(stream);
    drop(collector);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while sender.stats().disconnects == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sender never saw the collector go"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for seq in 6..=10 {
        sender.try_send(record(seq)).unwrap();
    }
    while sender.stats().connect_failures < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reconnection attempts"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        *sender.written().borrow(),
        Some(5),
        "nothing written while away"
    );

    let collector = TcpListener::bind(addr).await.unwrap();
    let second = collect(&collector, 5).await;
    assert_eq!(
        second.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![6, 7, 8, 9, 10]
    );
    wait_written(&sender, 10).await;
    let stats = sender.stats();
    assert_eq!((stats.written, stats.connects, stats.queued), (10, 2, 0));
}

/// A collector that accepts and stops reading: what the sender writes piles up in the
/// socket buffers, written but not delivered (the collector's host has not acknowledged it),
/// so an exporter's cursor does not move past it; once the collector reads, it is delivered.
#[tokio::test]
async fn records_a_collector_has_not_acknowledged_are_written_not_delivered() {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(loopback()).unwrap();
    let collector = socket.listen(4).unwrap();
    let addr = collector.local_addr().unwrap();
    let config = SenderConfig {
        queue_capacity: 20_000,
        write_timeout_secs: 60,
        ..SenderConfig::new(SenderTransport::Tcp, addr.to_string())
    };
    let sender = SyslogSender::start(&config).unwrap();
    let mut queued = 0;
    for seq in 1..=20_000 {
        if sender.try_send(record(seq)).is_err() {
            break;
        }
        queued = seq;
    }
    let (mut stream, _) = tokio::time::timeout(DEADLINE, collector.accept())
        .await
        .unwrap()
        .unwrap();
    // Far more than the collector's receive buffer holds is written...
    let mut written = sender.written();
    tokio::time::timeout(
        DEADLINE,
        written.wait_for(|w| w.is_some_and(|w| w >= 2_000)),
    )
    .await
    .expect("written within the deadline")
    .unwrap();
    // ... and not delivered.
    let delivered = sender.delivered().borrow().unwrap_or(0);
    assert!(
        delivered < 1_000,
        "{delivered} delivered to a collector that reads nothing"
    );

    // The collector reads everything: all of it is delivered.
    let reader = tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let mut delivered = sender.delivered();
    tokio::time::timeout(DEADLINE, delivered.wait_for(|d| *d == Some(queued)))
        .await
        .expect("delivered within the deadline once the collector reads")
        .unwrap();
    reader.abort();
}

/// TLS: the collector's certificate must chain to `ca_file`; with another CA nothing is
/// written and the attempts are counted.
#[tokio::test]
async fn the_sender_verifies_the_collector() {
    let pki = pki();
    let (listener, mut hints) = start(&ListenerConfig {
        tls: Some(TlsListenerConfig {
            listen: loopback(),
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            client_ca: None,
        }),
        ..config()
    })
    .await;
    let tls_addr = listener.local_addrs().tls.unwrap().to_string();
    let wrong = SenderConfig {
        ca_file: Some(pki.other_ca.clone()),
        backoff_min_ms: 10,
        backoff_max_ms: 50,
        ..SenderConfig::new(SenderTransport::Tls, tls_addr.clone())
    };
    let sender = SyslogSender::start(&wrong).unwrap();
    let cef = CefMalopEvent::new(
        id("11.1"),
        MalopEvent::Created,
        CefStyle::Vendor,
        SystemTime::now(),
    );
    sender
        .try_send(OutgoingMessage::new(cef.to_cef()).with_seq(1))
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while sender.stats().connect_failures < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempts counted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = sender.stats();
    assert_eq!((stats.written, stats.connects), (0, 0));
    assert!(
        !sender.shutdown(Duration::from_millis(50)).await,
        "the message was never written"
    );

    // `127.0.0.1:port` verified by IP address against the certificate's SAN.
    let right = SenderConfig {
        ca_file: Some(pki.ca.clone()),
        ..SenderConfig::new(SenderTransport::Tls, tls_addr)
    };
    let sender = SyslogSender::start(&right).unwrap();
    sender
        .try_send(OutgoingMessage::new(cef.to_cef()).with_seq(7))
        .unwrap();
    wait_written(&sender, 7).await;
    assert_eq!(next_hint(&mut hints).await.malop_id.as_str(), "11.1");
}

/// The queue is bounded: when it is full (the collector is away) a message is refused and
/// handed back whole; an oversized message is refused before queueing.
#[tokio::test]
async fn the_queue_is_bounded_and_refusals_lose_nothing() {
    let unused = TcpListener::bind(loopback()).await.unwrap();
    let addr = unused.local_addr().unwrap();
    drop(unused);
    let config = SenderConfig {
        queue_capacity: 2,
        max_message_bytes: 1000,
        ..SenderConfig::new(SenderTransport::Tcp, addr.to_string())
    };
    let sender = SyslogSender::start(&config).unwrap();
    // The writer takes one message out of the queue and holds it while it retries.
    sender.try_send(record(1)).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while sender.stats().queued != 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sender.try_send(record(2)).unwrap();
    sender.try_send(record(3)).unwrap();
    match sender.try_send(record(4)) {
        Err(SendError::Full(message)) => {
            assert_eq!(message.seq, Some(4));
            let text = std::str::from_utf8(&message.payload).unwrap();
            assert_eq!(AuditRecord::from_syslog_json(text).unwrap().seq, 4);
        }
        other => panic!("{other:?}"),
    }
    match sender.try_send(OutgoingMessage::new("x".repeat(1001))) {
        Err(SendError::TooLarge {
            len: 1001,
            max: 1000,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(sender.stats().queued, 2);
}
