//! Configuration of the listener (`[service.syslog]`) and of a sender, with their defaults
//! (all in [`defaults`]) and validation.
//!
//! Both types deserialize from TOML with unknown keys refused and every key optional except
//! where noted; [`ListenerConfig::validate`] and [`SenderConfig::validate`] report every
//! mistake with the dotted key (relative to the section) it concerns.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Every default, in one place.
pub mod defaults {
    /// The listener is off unless `enabled = true`.
    pub const ENABLED: bool = false;
    /// Longest message accepted or sent, in bytes (RFC 5425 asks receivers for 8192 at least).
    pub const MAX_MESSAGE_BYTES: usize = 8192;
    /// TCP and TLS connections open at once.
    pub const MAX_CONNECTIONS: usize = 64;
    /// TCP and TLS connections open at once from one source address.
    pub const MAX_CONNECTIONS_PER_SOURCE: usize = 8;
    /// A connection with no message for this long is closed.
    pub const IDLE_TIMEOUT_SECS: u64 = 300;
    /// A frame (or a TLS handshake) must complete within this many seconds of its first byte.
    pub const MESSAGE_TIMEOUT_SECS: u64 = 10;
    /// Messages per second a source may send, sustained.
    pub const RATE_PER_SOURCE: u32 = 500;
    /// Messages a source may send in a burst above the sustained rate.
    pub const BURST_PER_SOURCE: u32 = 2000;
    /// Source addresses whose rate is tracked at once.
    pub const MAX_SOURCES: usize = 4096;
    /// At most one hint per Malop per this many milliseconds.
    pub const COALESCE_INTERVAL_MS: u64 = 5000;
    /// Malops in the coalescing table at once.
    pub const MAX_TRACKED_MALOPS: usize = 10_000;

    /// Messages waiting in a sender's queue.
    pub const SENDER_QUEUE_CAPACITY: usize = 10_000;
    /// Timeout of one connection attempt (TCP connect plus TLS handshake).
    pub const SENDER_CONNECT_TIMEOUT_SECS: u64 = 10;
    /// Timeout of writing one message.
    pub const SENDER_WRITE_TIMEOUT_SECS: u64 = 10;
    /// First delay between reconnection attempts.
    pub const SENDER_BACKOFF_MIN_MS: u64 = 100;
    /// Longest delay between reconnection attempts.
    pub const SENDER_BACKOFF_MAX_MS: u64 = 30_000;
    /// Longest message a sender accepts, in bytes.
    pub const SENDER_MAX_MESSAGE_BYTES: usize = 65_507;
}

/// The largest UDP payload over IPv4; also the ceiling of every message size limit.
pub const MAX_UDP_PAYLOAD: usize = 65_507;
/// The smallest message size limit (RFC 5424: receivers must accept 480 bytes).
pub const MIN_MESSAGE_BYTES: usize = 480;

/// One mistake in a configuration section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key within the section (`tls.cert`, `allowed_sources[2]`), empty for the
    /// section as a whole.
    pub key: String,
    /// What is wrong and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Collects problems while checking a section.
#[derive(Default)]
struct Checker(Vec<ConfigProblem>);

impl Checker {
    fn fail(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn range<T: PartialOrd + fmt::Display + Copy>(&mut self, key: &str, value: T, lo: T, hi: T) {
        if value < lo || value > hi {
            self.fail(
                key,
                format!("{value} is out of range: expected {lo} to {hi}"),
            );
        }
    }

    fn done(self) -> Result<(), Vec<ConfigProblem>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// An allowed source: one IP address or a CIDR network, written `192.0.2.7`, `10.0.0.0/8`,
/// `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceNet(IpNet);

impl SourceNet {
    /// Whether `addr` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr.to_canonical())
    }
}

impl FromStr for SourceNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Self(net.trunc()));
        }
        text.parse::<IpAddr>()
            .map(|ip| Self(IpNet::from(ip.to_canonical())))
            .map_err(|_| {
                format!(
                    "`{text}` is not an IP address or a CIDR network (e.g. 192.0.2.7 or 10.0.0.0/8)"
                )
            })
    }
}

impl fmt::Display for SourceNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for SourceNet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SourceNet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `[service.syslog.tls]`: syslog over TLS (RFC 5425).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListenerConfig {
    /// Where to listen (`listen`, e.g. `"0.0.0.0:6514"`). Required.
    pub listen: SocketAddr,
    /// The server certificate chain, PEM (`cert`). Required.
    pub cert: PathBuf,
    /// The server's private key, PEM (`key`). Required.
    pub key: PathBuf,
    /// CA certificates, PEM (`client_ca`): when set, every client must present a
    /// certificate issued by one of them; when absent, no client certificate is asked for.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `[service.syslog]`: the listener for Cybereason's syslog events. Off by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Whether the service starts the listener (`enabled`, default false).
    pub enabled: bool,
    /// Plain TCP, RFC 6587 framing (`tcp_listen`, e.g. `"0.0.0.0:514"`); none when absent.
    pub tcp_listen: Option<SocketAddr>,
    /// UDP, one message per datagram (`udp_listen`); none when absent.
    pub udp_listen: Option<SocketAddr>,
    /// TLS over TCP (`[service.syslog.tls]`); none when absent.
    pub tls: Option<TlsListenerConfig>,
    /// Sources allowed to send (`allowed_sources`: IP addresses and CIDR networks). Empty
    /// (the default) allows any source: set it to the Cybereason server's addresses.
    pub allowed_sources: Vec<SourceNet>,
    /// Longest message accepted, in bytes (`max_message_bytes`, default 8192, 480 to 65507).
    pub max_message_bytes: usize,
    /// TCP and TLS connections at once (`max_connections`, default 64).
    pub max_connections: usize,
    /// Connections at once from one source, an IPv4 address or an IPv6 /64
    /// (`max_connections_per_source`, default 8).
    pub max_connections_per_source: usize,
    /// Seconds a connection may stay without a message (`idle_timeout_secs`, default 300).
    pub idle_timeout_secs: u64,
    /// Seconds a frame or a TLS handshake may take from its first byte
    /// (`message_timeout_secs`, default 10).
    pub message_timeout_secs: u64,
    /// Sustained messages per second from one source, an IPv4 address or an IPv6 /64
    /// (`rate_per_source`, default 500).
    pub rate_per_source: u32,
    /// Burst of messages above the rate from one source (`burst_per_source`, default 2000).
    pub burst_per_source: u32,
    /// Sources whose rate is tracked at once (`max_sources`, default 4096); when full, a new
    /// source takes the place of the one seen least recently (a flood of sources cannot
    /// lock any source out).
    pub max_sources: usize,
    /// At most one hint per Malop per this many milliseconds (`coalesce_interval_ms`,
    /// default 5000).
    pub coalesce_interval_ms: u64,
    /// Malops waiting or inside their interval at once (`max_tracked_malops`, default
    /// 10000), shared fairly by sources: when it is full, a new Malop takes a place of the
    /// source holding the most if that holds at least two more, else it is dropped.
    pub max_tracked_malops: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            enabled: defaults::ENABLED,
            tcp_listen: None,
            udp_listen: None,
            tls: None,
            allowed_sources: Vec::new(),
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_source: defaults::MAX_CONNECTIONS_PER_SOURCE,
            idle_timeout_secs: defaults::IDLE_TIMEOUT_SECS,
            message_timeout_secs: defaults::MESSAGE_TIMEOUT_SECS,
            rate_per_source: defaults::RATE_PER_SOURCE,
            burst_per_source: defaults::BURST_PER_SOURCE,
            max_sources: defaults::MAX_SOURCES,
            coalesce_interval_ms: defaults::COALESCE_INTERVAL_MS,
            max_tracked_malops: defaults::MAX_TRACKED_MALOPS,
        }
    }
}

impl ListenerConfig {
    /// Checks every value; all problems at once.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut c = Checker::default();
        if self.enabled && !self.has_transport() {
            c.fail(
                "",
                "the syslog listener is enabled but listens nowhere: set tcp_listen, udp_listen or [tls] listen",
            );
        }
        if let (Some(tcp), Some(tls)) = (self.tcp_listen, &self.tls)
            && tcp == tls.listen
            && tcp.port() != 0
        {
            c.fail(
                "tls.listen",
                format!("{tcp} is also tcp_listen: use two ports"),
            );
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("tls.cert", Some(&tls.cert)),
                ("tls.key", Some(&tls.key)),
                ("tls.client_ca", tls.client_ca.as_ref()),
            ] {
                if path.is_some_and(|p| p.as_os_str().is_empty()) {
                    c.fail(key, "empty path");
                }
            }
        }
        c.range(
            "max_message_bytes",
            self.max_message_bytes,
            MIN_MESSAGE_BYTES,
            MAX_UDP_PAYLOAD,
        );
        c.range("max_connections", self.max_connections, 1, 100_000);
        c.range(
            "max_connections_per_source",
            self.max_connections_per_source,
            1,
            self.max_connections.max(1),
        );
        c.range("idle_timeout_secs", self.idle_timeout_secs, 1, 86_400);
        c.range("message_timeout_secs", self.message_timeout_secs, 1, 3600);
        c.range("rate_per_source", self.rate_per_source, 1, 1_000_000);
        c.range("burst_per_source", self.burst_per_source, 1, 1_000_000);
        c.range("max_sources", self.max_sources, 1, 1_000_000);
        c.range(
            "coalesce_interval_ms",
            self.coalesce_interval_ms,
            1,
            3_600_000,
        );
        c.range("max_tracked_malops", self.max_tracked_malops, 1, 10_000_000);
        c.done()
    }

    /// Whether any transport is configured.
    pub fn has_transport(&self) -> bool {
        self.tcp_listen.is_some() || self.udp_listen.is_some() || self.tls.is_some()
    }

    /// Resolves relative TLS paths against `base` (the configuration file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(tls) = &mut self.tls {
            for path in [&mut tls.cert, &mut tls.key] {
                *path = base.join(&*path);
            }
            if let Some(ca) = &mut tls.client_ca {
                *ca = base.join(&*ca);
            }
        }
    }

    /// Whether `addr` may send (any address when `allowed_sources` is empty).
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.allowed_sources.is_empty() || self.allowed_sources.iter().any(|n| n.contains(addr))
    }

    /// `coalesce_interval_ms` as a duration.
    pub fn coalesce_interval(&self) -> Duration {
        Duration::from_millis(self.coalesce_interval_ms)
    }
}

/// How a sender reaches its collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SenderTransport {
    /// Plain TCP, RFC 6587 framing.
    Tcp,
    /// TLS over TCP (RFC 5425), the server verified against `ca_file`.
    Tls,
    /// UDP, one message per datagram (RFC 5426); nothing tells whether it arrived.
    Udp,
}

/// How messages are framed on a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// `LEN SP MSG` (RFC 6587 3.4.1, RFC 5425): any byte may appear in a message.
    OctetCounting,
    /// `MSG LF` (RFC 6587 3.4.2), as most Cybereason servers and legacy collectors use.
    Newline,
}

/// A sender: where syslog messages go (the SIEM export, the simulator's events).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderConfig {
    /// `tcp`, `tls` or `udp` (`transport`). Required.
    pub transport: SenderTransport,
    /// The collector, `host:port` (`address`); resolved at each connection. Required.
    pub address: String,
    /// The name the server certificate must carry (`server_name`; default: the host part of
    /// `address`). TLS only.
    #[serde(default)]
    pub server_name: Option<String>,
    /// CA certificates, PEM, that the collector's certificate must chain to (`ca_file`).
    /// Required for TLS; the system's roots are not used.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain, PEM, for collectors that require one (`client_cert`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key, PEM (`client_key`).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// `octet-counting` (default) or `newline` (`framing`). Streams only.
    #[serde(default = "default_framing")]
    pub framing: Framing,
    /// Messages waiting to be written (`queue_capacity`, default 10000); when full, new
    /// messages are refused to the caller, never dropped silently.
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Longest message accepted from the caller, in bytes (`max_message_bytes`, default 65507).
    #[serde(default = "default_sender_max")]
    pub max_message_bytes: usize,
    /// Seconds for one connection attempt (`connect_timeout_secs`, default 10).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds for writing one message (`write_timeout_secs`, default 10).
    #[serde(default = "default_write_timeout")]
    pub write_timeout_secs: u64,
    /// First delay between reconnection attempts, ms (`backoff_min_ms`, default 100).
    #[serde(default = "default_backoff_min")]
    pub backoff_min_ms: u64,
    /// Longest delay between reconnection attempts, ms (`backoff_max_ms`, default 30000).
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
}

fn default_framing() -> Framing {
    Framing::OctetCounting
}
fn default_queue() -> usize {
    defaults::SENDER_QUEUE_CAPACITY
}
fn default_sender_max() -> usize {
    defaults::SENDER_MAX_MESSAGE_BYTES
}
fn default_connect_timeout() -> u64 {
    defaults::SENDER_CONNECT_TIMEOUT_SECS
}
fn default_write_timeout() -> u64 {
    defaults::SENDER_WRITE_TIMEOUT_SECS
}
fn default_backoff_min() -> u64 {
    defaults::SENDER_BACKOFF_MIN_MS
}
fn default_backoff_max() -> u64 {
    defaults::SENDER_BACKOFF_MAX_MS
}

impl SenderConfig {
    /// A sender to `address` over `transport` with every other setting at its default.
    pub fn new(transport: SenderTransport, address: impl Into<String>) -> Self {
        Self {
            transport,
            address: address.into(),
            server_name: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            framing: default_framing(),
            queue_capacity: default_queue(),
            max_message_bytes: default_sender_max(),
            connect_timeout_secs: default_connect_timeout(),
            write_timeout_secs: default_write_timeout(),
            backoff_min_ms: default_backoff_min(),
            backoff_max_ms: default_backoff_max(),
        }
    }

    /// Checks every value; all problems at once.
    pub fn validate(&self) -> Result<(), Vec<ConfigProblem>> {
        let mut c = Checker::default();
        if split_host_port(&self.address).is_none() {
            c.fail(
                "address",
                format!(
                    "`{}` is not host:port (e.g. siem.example.com:6514 or [2001:db8::1]:514)",
                    self.address
                ),
            );
        }
        let tls = self.transport == SenderTransport::Tls;
        if tls && self.ca_file.is_none() {
            c.fail("ca_file", "required for transport = \"tls\": the CA file the collector's certificate must chain to");
        }
        if !tls {
            for (key, set) in [
                ("ca_file", self.ca_file.is_some()),
                ("server_name", self.server_name.is_some()),
                ("client_cert", self.client_cert.is_some()),
                ("client_key", self.client_key.is_some()),
            ] {
                if set {
                    c.fail(key, "only used with transport = \"tls\"");
                }
            }
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            c.fail("client_key", "client_cert and client_key go together");
        }
        c.range("queue_capacity", self.queue_capacity, 1, 10_000_000);
        c.range(
            "max_message_bytes",
            self.max_message_bytes,
            MIN_MESSAGE_BYTES,
            MAX_UDP_PAYLOAD,
        );
        c.range("connect_timeout_secs", self.connect_timeout_secs, 1, 3600);
        c.range("write_timeout_secs", self.write_timeout_secs, 1, 3600);
        c.range("backoff_min_ms", self.backoff_min_ms, 1, 3_600_000);
        c.range(
            "backoff_max_ms",
            self.backoff_max_ms,
            self.backoff_min_ms.max(1),
            3_600_000,
        );
        c.done()
    }

    /// Resolves relative paths against `base` (the configuration file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.ca_file,
            &mut self.client_cert,
            &mut self.client_key,
        ]
        .into_iter()
        .flatten()
        {
            *path = base.join(&*path);
        }
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6 literals).
pub(crate) fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_nets() {
        let net: SourceNet = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.200.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.0.0.9".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one: SourceNet = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7");
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: SourceNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<SourceNet>().is_err());
        assert!(
            "example.com"
                .parse::<SourceNet>()
                .unwrap_err()
                .contains("example.com")
        );
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("siem:6514"), Some(("siem", 6514)));
        assert_eq!(split_host_port("[::1]:514"), Some(("::1", 514)));
        assert_eq!(split_host_port("::1:514"), None);
        assert_eq!(split_host_port("siem"), None);
        assert_eq!(split_host_port(":514"), None);
        assert_eq!(split_host_port("siem:99999"), None);
    }
}
