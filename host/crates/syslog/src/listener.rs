//! The listener: TCP, TLS and UDP transports feeding the coalescer, with every bound
//! enforced before a message is parsed.

use crate::coalesce::{Coalescer, HintReceiver, Share};
use crate::config::{ConfigProblem, ListenerConfig};
use crate::framing::{Decoded, FrameDecoder};
use crate::malop::{MalopHint, source_key};
use crate::parse::{Parsed, parse_message};
use crate::stats::{Counters, DropReason, Event, ListenerStats};
use crate::tls::{self, TlsError};
use bytes::BytesMut;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hashlink::LruCache;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

const READ_CHUNK: usize = 8192;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The configuration has mistakes.
    #[error("invalid syslog listener configuration: {}", render(.0))]
    Config(Vec<ConfigProblem>),
    /// No transport is configured.
    #[error(
        "the syslog listener has nothing to listen on: set tcp_listen, udp_listen or tls.listen"
    )]
    NoTransport,
    /// A socket could not be bound.
    #[error("cannot listen for syslog over {transport} on {addr}: {source}")]
    Bind {
        /// `tcp`, `tls` or `udp`.
        transport: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The TLS certificate, key or client CA could not be used.
    #[error("syslog TLS listener: {0}")]
    Tls(#[from] TlsError),
}

fn render(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The addresses the listener is bound to (useful when a port 0 was configured).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoundAddrs {
    /// Plain TCP.
    pub tcp: Option<SocketAddr>,
    /// TLS.
    pub tls: Option<SocketAddr>,
    /// UDP.
    pub udp: Option<SocketAddr>,
}

/// A running listener. Dropping it stops it too; [`SyslogListener::shutdown`] also waits.
#[derive(Debug)]
pub struct SyslogListener {
    addrs: BoundAddrs,
    counters: Arc<Counters>,
    coalescer: Coalescer,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl SyslogListener {
    /// Validates `config`, binds every configured transport and starts serving; returns the
    /// listener and the stream of hints. Must run inside a tokio runtime. `enabled` is not
    /// looked at: the caller decides whether to start.
    pub async fn start(config: &ListenerConfig) -> Result<(Self, HintReceiver), ListenerError> {
        config.validate().map_err(ListenerError::Config)?;
        if !config.has_transport() {
            return Err(ListenerError::NoTransport);
        }
        let acceptor = match &config.tls {
            Some(t) => Some(TlsAcceptor::from(Arc::new(tls::server_config(
                &t.cert,
                &t.key,
                t.client_ca.as_deref(),
            )?))),
            None => None,
        };
        let tcp = bind_tcp("tcp", config.tcp_listen).await?;
        let tls_listener = bind_tcp("tls", config.tls.as_ref().map(|t| t.listen)).await?;
        let udp = match config.udp_listen {
            Some(addr) => {
                Some(
                    UdpSocket::bind(addr)
                        .await
                        .map_err(|source| ListenerError::Bind {
                            transport: "udp",
                            addr,
                            source,
                        })?,
                )
            }
            None => None,
        };
        let addrs = BoundAddrs {
            tcp: tcp.as_ref().and_then(|l| l.local_addr().ok()),
            tls: tls_listener.as_ref().and_then(|l| l.local_addr().ok()),
            udp: udp.as_ref().and_then(|s| s.local_addr().ok()),
        };
        let counters = Counters::new();
        let (coalescer, hints) = Coalescer::new(
            config.coalesce_interval(),
            config.max_tracked_malops,
            counters.clone(),
        );
        let (shutdown, watch_rx) = watch::channel(false);
        let ctx = Arc::new(Ctx::new(
            config.clone(),
            counters.clone(),
            coalescer.clone(),
        ));
        let mut tasks = JoinSet::new();
        if let Some(l) = tcp {
            tasks.spawn(accept_loop(l, None, ctx.clone(), watch_rx.clone()));
        }
        if let Some(l) = tls_listener {
            tasks.spawn(accept_loop(l, acceptor, ctx.clone(), watch_rx.clone()));
        }
        if let Some(s) = udp {
            tasks.spawn(udp_loop(s, ctx.clone(), watch_rx.clone()));
        }
        tracing::info!(tcp = ?addrs.tcp, tls = ?addrs.tls, udp = ?addrs.udp, "syslog listener started");
        Ok((
            Self {
                addrs,
                counters,
                coalescer,
                shutdown,
                tasks,
            },
            hints,
        ))
    }

    /// Where the listener is bound.
    pub fn local_addrs(&self) -> BoundAddrs {
        self.addrs
    }

    /// The counters now.
    pub fn stats(&self) -> ListenerStats {
        self.counters.snapshot()
    }

    /// The live counters, to read from a metrics collector that outlives this handle.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Stops accepting, closes every connection and waits for the tasks to end; the hint
    /// stream then ends once its ready hints are taken.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.coalescer.close();
    }
}

impl Drop for SyslogListener {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.tasks.abort_all();
        self.coalescer.close();
    }
}

async fn bind_tcp(
    transport: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, ListenerError> {
    match addr {
        Some(addr) => {
            TcpListener::bind(addr)
                .await
                .map(Some)
                .map_err(|source| ListenerError::Bind {
                    transport,
                    addr,
                    source,
                })
        }
        None => Ok(None),
    }
}

/// What every transport task shares.
struct Ctx {
    config: ListenerConfig,
    counters: Arc<Counters>,
    coalescer: Coalescer,
    /// Rates of messages over TCP and TLS, whose source address is real.
    stream_rates: SourceRates,
    /// Rates of datagrams, kept apart: a datagram's source can be forged, and forged
    /// datagrams must not use up the rate of the server's own connection.
    datagram_rates: SourceRates,
    conns: Arc<ConnLimits>,
}

/// How a message came in.
#[derive(Clone, Copy)]
enum Carrier {
    /// A TCP or TLS connection.
    Stream,
    /// A UDP datagram.
    Datagram,
}

impl Ctx {
    fn new(config: ListenerConfig, counters: Arc<Counters>, coalescer: Coalescer) -> Self {
        Self {
            stream_rates: SourceRates::new(&config),
            datagram_rates: SourceRates::new(&config),
            conns: Arc::new(ConnLimits::new(&config)),
            config,
            counters,
            coalescer,
        }
    }

    fn message_timeout(&self) -> Duration {
        Duration::from_secs(self.config.message_timeout_secs)
    }

    /// One whole message from `peer`.
    fn handle(&self, peer: SocketAddr, carrier: Carrier, raw: &[u8]) {
        self.counters.count(Event::MessagesReceived);
        let rates = match carrier {
            Carrier::Stream => &self.stream_rates,
            Carrier::Datagram => &self.datagram_rates,
        };
        if !rates.check(peer.ip()) {
            self.dropped(peer, DropReason::RateLimited);
            return;
        }
        // A datagram's address may be forged: all datagrams share one part of the table.
        let share = match carrier {
            Carrier::Stream => Share::Stream(source_key(peer.ip())),
            Carrier::Datagram => Share::Datagrams,
        };
        match parse_message(raw) {
            Ok(Parsed::Malop {
                malop_id, event, ..
            }) => self.coalescer.ingest(
                MalopHint {
                    malop_id,
                    event,
                    source: peer,
                    received_at: SystemTime::now(),
                },
                share,
            ),
            Ok(Parsed::NotMalop) => self.counters.count(Event::NotMalopEvents),
            Err(reason) => self.dropped(peer, reason),
        }
    }

    /// A message from `peer` dropped before it could be parsed.
    fn received_dropped(&self, peer: SocketAddr, reason: DropReason) {
        self.counters.count(Event::MessagesReceived);
        self.dropped(peer, reason);
    }

    fn dropped(&self, peer: SocketAddr, reason: DropReason) {
        self.counters.dropped(reason);
        tracing::debug!(%peer, %reason, "syslog message dropped");
    }
}

/// Per-source message rates (GCRA from `governor`), for a bounded number of sources.
///
/// When the table is full, a new source takes the place of the one seen least recently
/// (which starts afresh if it comes back). So no set of sources, spoofed datagrams from
/// thousands of addresses included, can keep a Cybereason server out; a source sending
/// more than its rate is seen often, stays in the table and stays limited.
struct SourceRates {
    quota: Quota,
    table: Mutex<LruCache<IpAddr, DefaultDirectRateLimiter>>,
}

impl SourceRates {
    fn new(config: &ListenerConfig) -> Self {
        let rate = NonZeroU32::new(config.rate_per_source).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst_per_source).unwrap_or(NonZeroU32::MIN);
        Self {
            quota: Quota::per_second(rate).allow_burst(burst),
            table: Mutex::new(LruCache::new(config.max_sources.max(1))),
        }
    }

    /// Whether `ip` may send one more message now.
    fn check(&self, ip: IpAddr) -> bool {
        let ip = source_key(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(limiter) = table.get_mut(&ip) {
            return limiter.check().is_ok();
        }
        let limiter = RateLimiter::direct(self.quota);
        let allowed = limiter.check().is_ok();
        table.insert(ip, limiter);
        allowed
    }

    /// The sources tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().unwrap().len()
    }
}

/// The global and per-source limits on open connections.
///
/// When every place is taken, a connection from a source holding at least two fewer than the
/// source holding the most takes the place of that source's connection that has gone
/// longest without a whole message: silent connections from a few addresses cannot keep the
/// Cybereason server from reconnecting for `idle_timeout_secs`.
struct ConnLimits {
    max: usize,
    max_per_source: usize,
    open: Mutex<OpenConns>,
    /// The clock connections' last messages are read on.
    epoch: Instant,
}

/// The connections open now, by source.
#[derive(Default)]
struct OpenConns {
    by_source: HashMap<IpAddr, Vec<Arc<Slot>>>,
    total: usize,
    next_id: u64,
}

/// One open connection, as the limits see it.
struct Slot {
    id: u64,
    /// When the connection last delivered a whole message (or opened), in ms after `epoch`.
    last_message_ms: AtomicU64,
    /// Told when the connection must give its place up.
    evicted: Notify,
}

/// One open connection's place; released on drop.
struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    slot: Arc<Slot>,
}

impl ConnPermit {
    /// Notes a whole message: the connection is not idle.
    fn delivered(&self) {
        let ms = self.limits.epoch.elapsed().as_millis() as u64;
        self.slot.last_message_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes when the connection must close to make room for another source's.
    async fn evicted(&self) {
        self.slot.evicted.notified().await;
    }
}

impl ConnLimits {
    fn new(config: &ListenerConfig) -> Self {
        Self {
            max: config.max_connections,
            max_per_source: config.max_connections_per_source,
            open: Mutex::new(OpenConns::default()),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OpenConns> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection from `ip`, counted per source as rates are (an IPv6 /64 is
    /// one source: one host holds them all), and whether another connection was evicted
    /// for it.
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<(ConnPermit, bool)> {
        let ip = source_key(ip);
        let mut open = self.lock();
        let own = open.by_source.get(&ip).map_or(0, Vec::len);
        if own >= self.max_per_source {
            return None;
        }
        let evicted = open.total >= self.max;
        if evicted {
            open.evict_for(own)?;
        }
        open.next_id += 1;
        let slot = Arc::new(Slot {
            id: open.next_id,
            last_message_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            evicted: Notify::new(),
        });
        open.by_source.entry(ip).or_default().push(slot.clone());
        open.total += 1;
        let permit = ConnPermit {
            limits: self.clone(),
            ip,
            slot,
        };
        Some((permit, evicted))
    }
}

impl OpenConns {
    /// Closes the longest-silent connection of the source holding the most, if it holds at
    /// least two more than `own`.
    fn evict_for(&mut self, own: usize) -> Option<()> {
        let (&victim, slots) = self.by_source.iter().max_by_key(|(_, slots)| slots.len())?;
        if slots.len() < own + 2 {
            return None;
        }
        let quietest = slots
            .iter()
            .min_by_key(|s| s.last_message_ms.load(Ordering::Relaxed))?
            .id;
        let slot = self.remove(victim, quietest)?;
        slot.evicted.notify_one();
        Some(())
    }

    fn remove(&mut self, ip: IpAddr, id: u64) -> Option<Arc<Slot>> {
        let slots = self.by_source.get_mut(&ip)?;
        let at = slots.iter().position(|s| s.id == id)?;
        let slot = slots.swap_remove(at);
        if slots.is_empty() {
            self.by_source.remove(&ip);
        }
        self.total -= 1;
        Some(slot)
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        // An evicted connection's place was given up when it was evicted.
        self.limits.lock().remove(self.ip, self.slot.id);
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Ctx>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Some(permit) = admit(&ctx, peer) {
                        conns.spawn(serve_connection(stream, peer, tls.clone(), ctx.clone(), permit));
                    }
                }
                Err(error) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "syslog accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

/// Applies the allowlist and the connection limits to a new connection.
fn admit(ctx: &Arc<Ctx>, peer: SocketAddr) -> Option<ConnPermit> {
    if !ctx.config.allows(peer.ip()) {
        ctx.counters.count(Event::ConnectionsRefusedSource);
        tracing::debug!(%peer, "syslog connection refused: source not allowed");
        return None;
    }
    let Some((permit, evicted)) = ctx.conns.acquire(peer.ip()) else {
        ctx.counters.count(Event::ConnectionsRefusedLimit);
        tracing::debug!(%peer, "syslog connection refused: too many connections");
        return None;
    };
    if evicted {
        ctx.counters.count(Event::ConnectionsEvicted);
        tracing::debug!(%peer, "syslog connection accepted in the place of a silent one");
    }
    ctx.counters.count(Event::ConnectionsAccepted);
    Some(permit)
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    ctx: Arc<Ctx>,
    permit: ConnPermit,
) {
    let serve = async {
        match tls {
            None => read_frames(stream, peer, &ctx, &permit).await,
            Some(acceptor) => {
                match tokio::time::timeout(ctx.message_timeout(), acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => read_frames(stream, peer, &ctx, &permit).await,
                    Ok(Err(error)) => {
                        ctx.counters.count(Event::TlsHandshakeFailures);
                        tracing::debug!(%peer, %error, "syslog TLS handshake failed");
                    }
                    Err(_) => ctx.counters.count(Event::ConnectionsSlowTimeout),
                }
            }
        }
    };
    tokio::select! {
        () = serve => {}
        // Counted when the newcomer was accepted in its place.
        () = permit.evicted() => {}
    }
    // Release the place before counting, so that a reader of the counters who sees the
    // close can connect again.
    drop(permit);
    ctx.counters.count(Event::ConnectionsClosed);
}

/// Reads frames until the peer closes, a bound is hit, or framing is lost.
async fn read_frames<S: AsyncRead + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    ctx: &Ctx,
    permit: &ConnPermit,
) {
    let mut decoder = FrameDecoder::new(ctx.config.max_message_bytes);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let idle = Duration::from_secs(ctx.config.idle_timeout_secs);
    let mut frame_deadline: Option<Instant> = None;
    // Moved by whole messages only: separators between frames (newlines, spaces, NULs)
    // sent now and then must not hold a connection, and its place, open for ever.
    let mut idle_deadline = Instant::now() + idle;
    loop {
        let mut progressed = false;
        loop {
            match decoder.decode(&mut buf) {
                Decoded::Frame(frame) => ctx.handle(peer, Carrier::Stream, &frame),
                Decoded::Dropped(reason) => ctx.received_dropped(peer, reason),
                Decoded::Fatal(reason) => return ctx.received_dropped(peer, reason),
                Decoded::NeedMore => break,
            }
            progressed = true;
        }
        if progressed {
            idle_deadline = Instant::now() + idle;
            permit.delivered();
        }
        let mid_frame = decoder.in_frame(&buf);
        if !mid_frame {
            frame_deadline = None;
        } else if progressed || frame_deadline.is_none() {
            frame_deadline = Some(Instant::now() + ctx.message_timeout());
        }
        let deadline = frame_deadline.unwrap_or(idle_deadline);
        buf.reserve(READ_CHUNK);
        // A message being skipped (over the limit) was counted when the skipping began;
        // only one still buffered is cut short.
        let partial = !buf.is_empty();
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                if partial {
                    ctx.received_dropped(peer, DropReason::Truncated);
                }
                return;
            }
            Ok(Ok(_)) => {}
            Err(_) if frame_deadline.is_some() => {
                ctx.counters.count(Event::ConnectionsSlowTimeout);
                if partial {
                    ctx.received_dropped(peer, DropReason::Truncated);
                }
                return;
            }
            Err(_) => return ctx.counters.count(Event::ConnectionsIdleTimeout),
        }
    }
}

async fn udp_loop(socket: UdpSocket, ctx: Arc<Ctx>, mut shutdown: watch::Receiver<bool>) {
    let max = ctx.config.max_message_bytes;
    // One byte more than the limit: a datagram that fills it was longer than the limit.
    let mut buf = vec![0u8; max + 1];
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            received = socket.recv_from(&mut buf) => match received {
                Ok((len, peer)) => {
                    if !ctx.config.allows(peer.ip()) {
                        ctx.counters.count(Event::DatagramsRefusedSource);
                    } else if len > max {
                        ctx.received_dropped(peer, DropReason::Oversized);
                    } else {
                        ctx.handle(peer, Carrier::Datagram, &buf[..len]);
                    }
                }
                Err(error) => tracing::debug!(%error, "syslog UDP receive failed"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ListenerConfig, SourceRates};
    use crate::malop::source_key;
    use std::net::IpAddr;

    /// A full table makes room for a new source: thousands of (spoofed) sources sending once
    /// cannot lock out the server; a source over its rate stays limited meanwhile.
    #[test]
    fn a_full_table_of_sources_never_locks_a_new_one_out() {
        let config = ListenerConfig {
            rate_per_source: 1,
            burst_per_source: 2,
            max_sources: 8,
            ..ListenerConfig::default()
        };
        let rates = SourceRates::new(&config);
        let noisy: IpAddr = "192.0.2.200".parse().unwrap();
        assert!(rates.check(noisy) && rates.check(noisy));
        assert!(!rates.check(noisy), "over its burst");
        for n in 0..1000u32 {
            let spoofed = IpAddr::from((0x0a00_0000 + n).to_be_bytes());
            assert!(rates.check(spoofed), "new source {spoofed}");
            if n % 4 == 0 {
                assert!(!rates.check(noisy), "the noisy source stays limited");
            }
        }
        assert_eq!(rates.tracked(), 8);
        let server: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(rates.check(server), "the server after the flood");
    }

    #[test]
    fn an_ipv6_host_is_rated_by_its_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            source_key(ip("2001:db8:1:2::7"))
        );
        assert_ne!(
            source_key(ip("2001:db8:1:3::1")),
            source_key(ip("2001:db8:1:2::1"))
        );
        assert_eq!(source_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(source_key(ip("10.1.2.3")), ip("10.1.2.3"));
    }
}
