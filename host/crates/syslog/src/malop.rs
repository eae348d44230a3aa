//! What a Malop event may tell riposte: a validated Malop id and the kind of event.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

/// The longest Malop id accepted, in bytes (the dotted form is at most 10 + 1 + 20 = 31).
pub const MAX_MALOP_ID_LEN: usize = 32;

/// A Malop guid whose shape was checked: `11.-7780537507363356527` (a non-negative prefix of
/// at most 10 digits, a dot, a signed 64-bit integer) or `AAAA0ws7O-MUgDmB` (16 base64url
/// characters). Nothing else is accepted, so an id taken from a syslog message cannot carry
/// text into a query, a log line or a file name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MalopId(String);

/// Why a string is not a Malop id. It never repeats the rejected text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a Malop id ({len} bytes): expected `<digits>.<signed 64-bit integer>` such as `11.-7780537507363356527`, or 16 base64url characters such as `AAAA0ws7O-MUgDmB`"
)]
pub struct MalopIdError {
    /// Length of the rejected text in bytes.
    pub len: usize,
}

impl MalopId {
    /// Checks the shape of `text` and wraps it unchanged.
    pub fn parse(text: &str) -> Result<Self, MalopIdError> {
        if text.len() <= MAX_MALOP_ID_LEN && (is_dotted(text) || is_base64url16(text)) {
            Ok(Self(text.to_owned()))
        } else {
            Err(MalopIdError { len: text.len() })
        }
    }

    /// The id exactly as the server spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string (to build the host's own id type).
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<'de> Deserialize<'de> for MalopId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for MalopId {
    type Err = MalopIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for MalopId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_dotted(text: &str) -> bool {
    let Some((prefix, number)) = text.split_once('.') else {
        return false;
    };
    let digits = number.strip_prefix('-').unwrap_or(number);
    (1..=10).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_digit())
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && number.parse::<i64>().is_ok()
}

fn is_base64url16(text: &str) -> bool {
    text.len() == 16
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The Malop event a message names (the CEF header's Name field). Only the kind is kept:
/// an unknown name of the Malop class becomes [`MalopEvent::Other`], without its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MalopEvent {
    /// `Malop Created`.
    Created,
    /// `Malop Updated`.
    Updated,
    /// `Malop Machine Information` (one message per machine of a new or updated Malop).
    MachineInformation,
    /// `Malop Updated Machine Information` (machines added to a Malop).
    UpdatedMachineInformation,
    /// `Malop Connection Added` (forwarder samples).
    ConnectionAdded,
    /// Any other event of the Malop class (`Malop Process Added`, `Malop User Added`, ...).
    Other,
}

impl MalopEvent {
    /// Every kind, in declaration order.
    pub const ALL: [MalopEvent; 6] = [
        Self::Created,
        Self::Updated,
        Self::MachineInformation,
        Self::UpdatedMachineInformation,
        Self::ConnectionAdded,
        Self::Other,
    ];

    /// The kind named by a CEF Name field, matched case-insensitively.
    pub fn from_name(name: &str) -> Self {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|event| *event != Self::Other && event.name().eq_ignore_ascii_case(name))
            .unwrap_or(Self::Other)
    }

    /// The CEF Name a Cybereason server writes; [`MalopEvent::Other`] is written as
    /// `Malop Other`, which reads back as `Other`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Created => "Malop Created",
            Self::Updated => "Malop Updated",
            Self::MachineInformation => "Malop Machine Information",
            Self::UpdatedMachineInformation => "Malop Updated Machine Information",
            Self::ConnectionAdded => "Malop Connection Added",
            Self::Other => "Malop Other",
        }
    }
}

impl fmt::Display for MalopEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hint that a Malop may have changed: look at it through the authenticated API.
///
/// It carries nothing else from the message: no machine, user, severity, link or time
/// written by the sender. `source` and `received_at` are what the listener itself observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalopHint {
    /// The Malop to look at.
    pub malop_id: MalopId,
    /// The kind of event (of the latest message, when several were coalesced).
    pub event: MalopEvent,
    /// The peer the (latest) message came from.
    pub source: SocketAddr,
    /// When the listener received the (latest) message, on the host's clock.
    pub received_at: SystemTime,
}

/// A sender as rates, connections and shares of the coalescing table are kept for it: an
/// IPv4 address, or an IPv6 address's /64 (one host commonly holds a whole /64, and must not
/// count as many sources).
pub(crate) fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_shapes() {
        for id in [
            "11.-7780537507363356527",
            "11.4718101284717793977",
            "211.1882697476172655933",
            "11.9223372036854775807",
            "11.-9223372036854775808",
            "AAAA0ws7O-MUgDmB",
            "kxwWqBCi55eyTi_X",
        ] {
            assert_eq!(MalopId::parse(id).unwrap().as_str(), id);
        }
    }

    #[test]
    fn refuses_other_shapes() {
        for id in [
            "",
            "11.",
            ".5",
            "11.-",
            "11.--5",
            "-11.5",
            "11.9223372036854775808",
            "12345678901.5",
            "11.5 ",
            "11.5\n",
            "AAAA0ws7O-MUgDm",
            "AAAA0ws7O-MUgDmB1",
            "AAAA0ws7O+MUgDmB",
            "11.1e5",
            "<script>",
        ] {
            assert!(MalopId::parse(id).is_err(), "{id:?} was accepted");
        }
    }

    #[test]
    fn the_error_does_not_repeat_the_text() {
        let err = MalopId::parse("evil\u{1b}[31m").unwrap_err();
        assert!(!err.to_string().contains("evil"));
    }

    #[test]
    fn event_names_round_trip_and_unknown_is_other() {
        for event in MalopEvent::ALL {
            assert_eq!(MalopEvent::from_name(event.name()), event);
        }
        assert_eq!(MalopEvent::from_name("malop created"), MalopEvent::Created);
        assert_eq!(
            MalopEvent::from_name("Malop Process Added"),
            MalopEvent::Other
        );
    }
}
