//! Syslog out: a CEF Malop event for every Malop the simulator creates or updates, sent to a
//! collector as a Cybereason server forwards them (`shared/cybereason-api.md` §7).
//!
//! A new Malop sends `Malop Created`, an update `Malop Updated`; both name the Malop in `cs1`
//! labelled `malopId`, and carry the event time (`rt`) from the server clock. The
//! [`SimEventStyle::Vendor`] style writes the vendor's CEF record (`CEF:1|Cybereason|...`)
//! behind an RFC 3164 header, the [`SimEventStyle::Forwarder`] style the CEF forwarder's record
//! (`CEF:0|...|1.0|...`) behind an RFC 5424 header.
//!
//! Events go through a [`SyslogSender`]: queued without waiting (a full queue or a stopped
//! sender drops the event, logs it and counts it), written by the sender's own task, which
//! reconnects with backoff. A collector that is away, slow or refusing never holds up the
//! simulator's answers.

use super::data::SimMalop;
use riposte_syslog::format::{CefMalopEvent, CefStyle, Facility, Origin, Priority, Severity};
use riposte_syslog::format::{rfc3164, rfc5424};
use riposte_syslog::{MalopEvent, OutgoingMessage, SenderConfig, SenderStats, SyslogSender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The header and CEF dialect of the simulator's events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SimEventStyle {
    /// `<PRI>Mmm dd hh:mm:ss HOST TAG CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|...`:
    /// the vendor's CEF record behind an RFC 3164 header, as on-premises servers send.
    #[default]
    Vendor,
    /// `<PRI>1 TIMESTAMP HOST APP - MSGID - CEF:0|Cybereason|Cybereason|1.0|1|Malop Created|5|...`:
    /// the CEF forwarder's record behind an RFC 5424 header.
    Forwarder,
}

/// Where and how the simulator sends its Malop events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimSyslog {
    /// The collector and transport (TCP, TLS or UDP), queue size, timeouts.
    pub sender: SenderConfig,
    /// The header and CEF dialect.
    pub style: SimEventStyle,
}

/// What the simulator's event sender did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimSyslogStats {
    /// Events queued for sending.
    pub queued: u64,
    /// Events dropped (queue full, sender stopped): each is also logged.
    pub dropped: u64,
    /// The sender's own counters (written, connection failures, ...).
    pub sender: SenderStats,
}

/// The host name in the events' syslog header.
const HOSTNAME: &str = "cybereason-sim";
/// The RFC 3164 tag or RFC 5424 APP-NAME (the simulator's choice: the vendor's is not
/// documented for Malop events).
const APP_NAME: &str = "malopSyslogLogger";
/// local0.warning.
const PRIORITY: Priority = Priority::new(Facility::Local0, Severity::Warning);

/// The running event sender, held by the simulator's state.
#[derive(Debug)]
pub(crate) struct MalopEvents {
    sender: SyslogSender,
    style: SimEventStyle,
    origin: Origin,
    queued: AtomicU64,
    dropped: AtomicU64,
}

impl MalopEvents {
    /// Starts the sender (it connects when the first event is queued).
    pub(crate) fn start(config: &SimSyslog) -> anyhow::Result<Self> {
        let sender = SyslogSender::start(&config.sender).map_err(|e| {
            anyhow::anyhow!(
                "the simulator's syslog sender to {}: {e}",
                config.sender.address
            )
        })?;
        Ok(Self {
            sender,
            style: config.style,
            origin: Origin::new(HOSTNAME, APP_NAME),
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues the event `event` about `malop`, happening at server time `at_ms`; never waits.
    pub(crate) fn emit(&self, malop: &SimMalop, event: MalopEvent, at_ms: i64) {
        let message = match self.message(malop, event, at_ms) {
            Ok(message) => message,
            Err(error) => return self.drop_event(malop, event, &error),
        };
        match self.sender.try_send(message) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => self.drop_event(malop, event, &error.to_string()),
        }
    }

    fn drop_event(&self, malop: &SimMalop, event: MalopEvent, error: &str) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(malop = %malop.guid, event = event.name(), %error, "simulator syslog event dropped");
    }

    /// The whole syslog message, header included.
    fn message(
        &self,
        malop: &SimMalop,
        event: MalopEvent,
        at_ms: i64,
    ) -> Result<OutgoingMessage, String> {
        let id = riposte_syslog::MalopId::parse(&malop.guid).map_err(|e| e.to_string())?;
        let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(at_ms).unwrap_or(0));
        let cef_style = match self.style {
            SimEventStyle::Vendor => CefStyle::Vendor,
            SimEventStyle::Forwarder => CefStyle::Forwarder,
        };
        let mut cef = CefMalopEvent::new(id, event, cef_style, time);
        if event == MalopEvent::Created {
            cef = created_fields(cef, malop).map_err(|e| e.to_string())?;
        }
        let cef = cef.to_cef();
        let text = match self.style {
            SimEventStyle::Vendor => rfc3164(PRIORITY, time, &self.origin, &cef),
            SimEventStyle::Forwarder => rfc5424(PRIORITY, time, &self.origin, "Malop", &cef),
        };
        Ok(OutgoingMessage::new(text))
    }

    /// The counters now.
    pub(crate) fn stats(&self) -> SimSyslogStats {
        SimSyslogStats {
            queued: self.queued.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            sender: self.sender.stats(),
        }
    }

    /// Writes what is queued, for at most `grace`, and stops.
    pub(crate) async fn shutdown(self, grace: Duration) {
        if !self.sender.shutdown(grace).await {
            tracing::warn!("the simulator's syslog sender stopped with events unsent");
        }
    }
}

/// The labelled fields of a creation message (`cs2` to `cs4`, `cn1`), as in the vendor's
/// examples.
fn created_fields(
    cef: CefMalopEvent,
    malop: &SimMalop,
) -> Result<CefMalopEvent, riposte_syslog::format::FormatError> {
    let activity = malop.activity_types.first().cloned().unwrap_or_default();
    cef.with_field("cs2Label", "detectionElementType")?
        .with_field(
            "cs2",
            format!("Malop{}", super::data::root_type(malop.kind)),
        )?
        .with_field("cs3Label", "malopActivityType")?
        .with_field("cs3", activity)?
        .with_field("cs4Label", "malopSuspect")?
        .with_field("cs4", malop.name.clone())?
        .with_field("cn1Label", "affectedMachinesCount")?
        .with_field("cn1", malop.machines.len().to_string())
}

/// Microseconds since the Unix epoch (0 before it).
pub(crate) fn epoch_us(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
