//! Shared helpers: listeners on loopback, clients, certificates, bounded waits.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use riposte_syslog::{
    HintReceiver, ListenerConfig, ListenerStats, MalopHint, MalopId, SyslogListener,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The longest any test waits for something that should happen.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An enabled listener on loopback TCP and UDP, other settings at their defaults.
pub fn config() -> ListenerConfig {
    ListenerConfig {
        enabled: true,
        tcp_listen: Some(loopback()),
        udp_listen: Some(loopback()),
        ..ListenerConfig::default()
    }
}

pub async fn start(config: &ListenerConfig) -> (SyslogListener, HintReceiver) {
    SyslogListener::start(config)
        .await
        .expect("the listener starts")
}

pub fn id(text: &str) -> MalopId {
    MalopId::parse(text).unwrap()
}

/// The next hint, within the deadline.
pub async fn next_hint(hints: &mut HintReceiver) -> MalopHint {
    tokio::time::timeout(DEADLINE, hints.recv())
        .await
        .expect("a hint within the deadline")
        .expect("the hint stream is open")
}

/// Waits (bounded) until the listener's counters satisfy `ready`.
pub async fn wait_stats(
    listener: &SyslogListener,
    what: &str,
    ready: impl Fn(&ListenerStats) -> bool,
) -> ListenerStats {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let stats = listener.stats();
        if ready(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn tcp_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

pub async fn udp_send(addr: SocketAddr, datagrams: &[&[u8]]) {
    let socket = UdpSocket::bind(loopback()).await.unwrap();
    for d in datagrams {
        socket.send_to(d, addr).await.unwrap();
    }
}

/// Waits (bounded) until the peer closes `stream`: reads return 0 or an error.
pub async fn closed_by_peer(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.expect("the listener closes the connection");
}

/// A test PKI: a CA, a server certificate for localhost/127.0.0.1, a client certificate
/// from the same CA, and a client certificate from another CA.
pub struct Pki {
    pub _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca1 = ca("riposte test CA");
    let ca2 = ca("someone else's CA");
    let (server_cert, server_key) = leaf(&ca1, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf(&ca1, "cr-server", ExtendedKeyUsagePurpose::ClientAuth);
    let (rogue_cert, rogue_key) = leaf(&ca2, "cr-server", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: write("ca.pem", &ca1.pem()),
        other_ca: write("other-ca.pem", &ca2.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        rogue_cert: write("rogue.pem", &rogue_cert),
        rogue_key: write("rogue.key", &rogue_key),
        _dir: dir,
    }
}

/// A TLS client that trusts `ca` and presents `client` if given.
pub async fn tls_connect(
    addr: SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let stream = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), stream)
        .await
}
