//! A syslog sender: a bounded queue in front of one connection (TCP, TLS or UDP) that
//! reconnects with exponential backoff (`backon`) and reports which sequence numbers were
//! written.
//!
//! See [`SyslogSender`] for what delivery means.

use crate::config::{ConfigProblem, Framing, SenderConfig, SenderTransport, split_host_port};
use crate::framing::frame;
use crate::tls::{self, TlsError};
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use rustls_pki_types::ServerName;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// One message to send: a whole syslog message (no framing), and the audit sequence number it
/// carries, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Reported through [`SyslogSender::written`] once the message is written.
    pub seq: Option<u64>,
    /// The message.
    pub payload: Bytes,
}

impl OutgoingMessage {
    /// A message without a sequence number.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            seq: None,
            payload: payload.into(),
        }
    }

    /// The same message carrying sequence number `seq`.
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }
}

/// Why the sender could not start.
#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    /// The configuration has mistakes.
    #[error("invalid syslog sender configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigProblem>),
    /// The TLS material could not be used.
    #[error("syslog sender TLS: {0}")]
    Tls(#[from] TlsError),
}

/// Why a message was not queued; the message comes back so that nothing is lost.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The queue is full (the collector is slow or away): try again later.
    #[error("the syslog sender's queue is full")]
    Full(OutgoingMessage),
    /// The sender has stopped.
    #[error("the syslog sender has stopped")]
    Closed(OutgoingMessage),
    /// The message is longer than `max_message_bytes`.
    #[error("syslog message of {len} bytes is over the limit of {max}")]
    TooLarge {
        /// The message.
        message: OutgoingMessage,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

#[derive(Debug, Default)]
struct SenderCounters {
    written: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    connect_failures: AtomicU64,
    write_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of a sender's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Messages written to a socket.
    pub written: u64,
    /// Connections established (the first one included).
    pub connects: u64,
    /// Connections the collector closed or reset while the sender was idle.
    pub disconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Writes that failed or timed out (the message was retried).
    pub write_failures: u64,
    /// Messages waiting in the queue now.
    pub queued: u64,
}

/// A running sender. Queue with [`SyslogSender::try_send`] (never waits) or
/// [`SyslogSender::send`] (waits for room in the queue).
///
/// Delivery is at least once as far as a sender can know: a message leaves the queue only
/// when it was written to the socket; a write that fails or times out is retried on the next
/// connection (the collector may then see it twice: sequence numbers make duplicates
/// recognisable). Syslog has no acknowledgement, so a message written just before the
/// collector dies can still be lost in transit; a sender watches its idle connection and
/// reconnects as soon as the collector closes it, which narrows that window to messages
/// written during the collector's last moments. An exporter that must lose nothing moves its
/// cursor with [`SyslogSender::delivered`] (bytes the collector's host acknowledged, not
/// bytes left in this host's socket buffer) and resends from it after a reconnection or a
/// failed write (see [`SenderStats::write_failures`]).
#[derive(Debug)]
pub struct SyslogSender {
    queue: mpsc::Sender<OutgoingMessage>,
    written: watch::Receiver<Option<u64>>,
    delivered: watch::Receiver<Option<u64>>,
    counters: Arc<SenderCounters>,
    max_message_bytes: usize,
    task: JoinHandle<()>,
}

impl SyslogSender {
    /// Validates `config`, loads its TLS material and starts the writer task (which connects
    /// when the first message is queued). Must run inside a tokio runtime.
    pub fn start(config: &SenderConfig) -> Result<Self, SenderError> {
        config.validate().map_err(SenderError::Config)?;
        let tls = match config.transport {
            SenderTransport::Tls => Some(tls_setup(config)?),
            _ => None,
        };
        let (queue, rx) = mpsc::channel(config.queue_capacity);
        let (written_tx, written) = watch::channel(None);
        let (delivered_tx, delivered) = watch::channel(None);
        let counters = Arc::new(SenderCounters::default());
        let writer = Writer {
            config: config.clone(),
            tls,
            counters: counters.clone(),
            written: written_tx,
            delivered: delivered_tx,
        };
        Ok(Self {
            queue,
            written,
            delivered,
            counters,
            max_message_bytes: config.max_message_bytes,
            task: tokio::spawn(writer.run(rx)),
        })
    }

    fn check_size(&self, message: OutgoingMessage) -> Result<OutgoingMessage, SendError> {
        let len = message.payload.len();
        if len > self.max_message_bytes {
            return Err(SendError::TooLarge {
                message,
                len,
                max: self.max_message_bytes,
            });
        }
        Ok(message)
    }

    /// Queues `message` if there is room now; never waits.
    pub fn try_send(&self, message: OutgoingMessage) -> Result<(), SendError> {
        let message = self.check_size(message)?;
        self.queue.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) => SendError::Full(m),
            mpsc::error::TrySendError::Closed(m) => SendError::Closed(m),
        })
    }

    /// Queues `message`, waiting for room in the queue.
    pub async fn send(&self, message: OutgoingMessage) -> Result<(), SendError> {
        let message = self.check_size(message)?;
        self.queue
            .send(message)
            .await
            .map_err(|e| SendError::Closed(e.0))
    }

    /// The highest sequence number written to a socket so far (messages are written in
    /// queue order); wait on it with `changed()` or `wait_for()`.
    pub fn written(&self) -> watch::Receiver<Option<u64>> {
        self.written.clone()
    }

    /// The highest sequence number delivered: written, and over TCP or TLS acknowledged by
    /// the collector's host (nothing of it is left in this host's socket buffer, where a
    /// collector that stopped reading would leave it until the write times out); over UDP,
    /// written. It never passes [`SyslogSender::written`].
    pub fn delivered(&self) -> watch::Receiver<Option<u64>> {
        self.delivered.clone()
    }

    /// The counters now.
    pub fn stats(&self) -> SenderStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SenderStats {
            written: load(&c.written),
            connects: load(&c.connects),
            disconnects: load(&c.disconnects),
            connect_failures: load(&c.connect_failures),
            write_failures: load(&c.write_failures),
            queued: (self.queue.max_capacity() - self.queue.capacity()) as u64,
        }
    }

    /// Stops taking messages and writes what is queued, for at most `grace`; whatever is
    /// left then is abandoned (its sequence numbers were never reported written). Returns
    /// whether the queue was drained.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let Self { queue, task, .. } = self;
        drop(queue);
        let abort = task.abort_handle();
        match tokio::time::timeout(grace, task).await {
            Ok(_) => true,
            Err(_) => {
                abort.abort();
                false
            }
        }
    }
}

fn tls_setup(config: &SenderConfig) -> Result<(TlsConnector, ServerName<'static>), SenderError> {
    let ca = config
        .ca_file
        .as_deref()
        .expect("validated: TLS has a ca_file");
    let client_auth = config
        .client_cert
        .as_deref()
        .zip(config.client_key.as_deref());
    let connector = TlsConnector::from(Arc::new(tls::client_config(ca, client_auth)?));
    let host = split_host_port(&config.address)
        .map(|(host, _)| host)
        .expect("validated: address is host:port");
    let name = tls::server_name(config.server_name.as_deref().unwrap_or(host))?;
    Ok((connector, name))
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Udp(UdpSocket),
}

impl Conn {
    /// Bytes written and not yet acknowledged by the peer's TCP (0 for UDP, which has no
    /// acknowledgement, and where the kernel cannot say).
    fn unacknowledged(&self) -> usize {
        match self {
            Conn::Tcp(s) => unacknowledged_bytes(s),
            Conn::Tls(s) => unacknowledged_bytes(s.get_ref().0),
            Conn::Udp(_) => 0,
        }
    }
}

/// `SIOCOUTQ`: the bytes of a TCP socket's send queue, unsent or sent and unacknowledged.
#[cfg(target_os = "linux")]
fn unacknowledged_bytes(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ for a socket) writes one c_int through the pointer, which
    // points at a live c_int; the descriptor is the stream's own, open while it is borrowed.
    let result = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    if result == 0 {
        queued.max(0) as usize
    } else {
        0
    }
}

/// Elsewhere the kernel is not asked: what is written counts as delivered.
#[cfg(not(target_os = "linux"))]
fn unacknowledged_bytes(_stream: &TcpStream) -> usize {
    0
}

struct Writer {
    config: SenderConfig,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    counters: Arc<SenderCounters>,
    written: watch::Sender<Option<u64>>,
    delivered: watch::Sender<Option<u64>>,
}

/// How often a written, unacknowledged sequence number is checked while no message waits.
const DELIVERY_CHECK: Duration = Duration::from_millis(20);

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<OutgoingMessage>) {
        let mut conn: Option<Conn> = None;
        let mut retry: Option<OutgoingMessage> = None;
        let mut buf = Vec::new();
        // The last sequence number written on this connection and not known delivered.
        let mut pending: Option<u64> = None;
        loop {
            let message = match retry.take() {
                Some(m) => m,
                None => match self.next_message(&mut rx, &mut conn, &mut pending).await {
                    Some(m) => m,
                    None => return self.close(conn, pending).await,
                },
            };
            let c = match conn.as_mut() {
                Some(c) => c,
                None => conn.insert(self.connect_with_backoff().await),
            };
            match self.write(c, &message, &mut buf).await {
                Ok(()) => {
                    bump(&self.counters.written);
                    if let Some(seq) = message.seq {
                        self.written.send_replace(Some(seq));
                        pending = Some(seq);
                    }
                    self.check_delivery(c, &mut pending);
                }
                Err(error) => {
                    tracing::warn!(collector = %self.config.address, %error, "syslog write failed; reconnecting");
                    bump(&self.counters.write_failures);
                    conn = None;
                    pending = None;
                    retry = Some(message);
                }
            }
        }
    }

    /// Reports `pending` delivered once the connection holds no unacknowledged byte.
    fn check_delivery(&self, conn: &Conn, pending: &mut Option<u64>) {
        let Some(seq) = *pending else {
            return;
        };
        if conn.unacknowledged() == 0 {
            self.delivered.send_replace(Some(seq));
            *pending = None;
        }
    }

    /// The next queued message; meanwhile an idle stream is watched, and dropped when the
    /// collector closes it (a collector never sends anything).
    async fn next_message(
        &self,
        rx: &mut mpsc::Receiver<OutgoingMessage>,
        conn: &mut Option<Conn>,
        pending: &mut Option<u64>,
    ) -> Option<OutgoingMessage> {
        loop {
            if let Some(c) = conn.as_ref() {
                self.check_delivery(c, pending);
            }
            // While a written message waits to be acknowledged, look again shortly.
            let recheck = async {
                match pending {
                    Some(_) => tokio::time::sleep(DELIVERY_CHECK).await,
                    None => std::future::pending().await,
                }
            };
            let closed = match conn.as_mut() {
                Some(Conn::Tcp(s)) => tokio::select! {
                    m = rx.recv() => return m,
                    () = wait_closed(s) => true,
                    () = recheck => false,
                },
                Some(Conn::Tls(s)) => tokio::select! {
                    m = rx.recv() => return m,
                    () = wait_closed(s.as_mut()) => true,
                    () = recheck => false,
                },
                Some(Conn::Udp(_)) | None => return rx.recv().await,
            };
            if closed {
                tracing::info!(collector = %self.config.address, "syslog collector closed the connection");
                bump(&self.counters.disconnects);
                *conn = None;
                *pending = None;
            }
        }
    }

    /// Ends a stream politely (TLS close_notify, TCP FIN), within the write timeout, once
    /// what was written is acknowledged (reported delivered) or that time has passed.
    async fn close(&self, mut conn: Option<Conn>, mut pending: Option<u64>) {
        let timeout = Duration::from_secs(self.config.write_timeout_secs);
        let acknowledged = async {
            while let Some(c) = conn.as_ref() {
                self.check_delivery(c, &mut pending);
                if pending.is_none() {
                    break;
                }
                tokio::time::sleep(DELIVERY_CHECK).await;
            }
        };
        let _ = tokio::time::timeout(timeout, acknowledged).await;
        let _ = match conn.take() {
            Some(Conn::Tcp(mut s)) => tokio::time::timeout(timeout, s.shutdown()).await,
            Some(Conn::Tls(mut s)) => tokio::time::timeout(timeout, s.shutdown()).await,
            Some(Conn::Udp(_)) | None => return,
        };
    }

    async fn connect_with_backoff(&self) -> Conn {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.backoff_min_ms))
            .with_max_delay(Duration::from_millis(self.config.backoff_max_ms))
            .with_jitter()
            .without_max_times();
        loop {
            let attempt = || async { self.connect().await };
            let result = attempt
                .retry(backoff)
                .notify(|error: &io::Error, delay: Duration| {
                    bump(&self.counters.connect_failures);
                    tracing::warn!(collector = %self.config.address, %error, ?delay, "syslog collector unreachable; retrying");
                })
                .await;
            if let Ok(conn) = result {
                bump(&self.counters.connects);
                return conn;
            }
        }
    }

    async fn connect(&self) -> io::Result<Conn> {
        let timeout = Duration::from_secs(self.config.connect_timeout_secs);
        tokio::time::timeout(timeout, self.connect_once())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connection attempt timed out"))?
    }

    async fn connect_once(&self) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing");
        for addr in tokio::net::lookup_host(&self.config.address).await? {
            match self.connect_to(addr).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn connect_to(&self, addr: SocketAddr) -> io::Result<Conn> {
        if self.config.transport == SenderTransport::Udp {
            let local: SocketAddr = if addr.is_ipv4() {
                "0.0.0.0:0".parse().expect("literal")
            } else {
                "[::]:0".parse().expect("literal")
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            return Ok(Conn::Udp(socket));
        }
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        match &self.tls {
            Some((connector, name)) => Ok(Conn::Tls(Box::new(
                connector.connect(name.clone(), stream).await?,
            ))),
            None => Ok(Conn::Tcp(stream)),
        }
    }

    async fn write(
        &self,
        conn: &mut Conn,
        message: &OutgoingMessage,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        let timeout = Duration::from_secs(self.config.write_timeout_secs);
        let write = async {
            match conn {
                Conn::Udp(socket) => socket.send(&message.payload).await.map(drop),
                Conn::Tcp(stream) => write_framed(stream, message, self.config.framing, buf).await,
                Conn::Tls(stream) => {
                    write_framed(stream.as_mut(), message, self.config.framing, buf).await
                }
            }
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }
}

async fn write_framed<S: AsyncWrite + Unpin>(
    stream: &mut S,
    message: &OutgoingMessage,
    framing: Framing,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    frame(&message.payload, framing == Framing::OctetCounting, buf);
    stream.write_all(buf).await?;
    stream.flush().await
}

/// Returns when the peer closes or resets the stream; anything it sends is discarded.
async fn wait_closed<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut scratch = [0u8; 512];
    while let Ok(n) = stream.read(&mut scratch).await {
        if n == 0 {
            return;
        }
    }
}
