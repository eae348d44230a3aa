//! One received message to a Malop event, or the reason it was dropped.
//!
//! A message is an optional syslog header (RFC 5424 or RFC 3164, parsed by `syslog_loose`)
//! followed by a CEF record, or a bare CEF record. Only a Cybereason event of the Malop class
//! whose `cs1` is labelled `malopId` (any case) and has the shape of a Malop id yields an
//! event; everything else is refused with a [`DropReason`] or ignored.

use crate::cef::{self, CefRecord};
use crate::malop::{MalopEvent, MalopId};
use crate::stats::DropReason;

/// Which header a message came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderKind {
    /// None: the message is a bare CEF record (Cybereason's own examples).
    Bare,
    /// An RFC 5424 header.
    Rfc5424,
    /// An RFC 3164 (BSD) header, with or without the `<PRI>`.
    Rfc3164,
}

/// What a message said, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A Cybereason Malop event naming a well-formed Malop id.
    Malop {
        /// The Malop the event names.
        malop_id: MalopId,
        /// The event kind.
        event: MalopEvent,
        /// The header the message came with.
        header: HeaderKind,
    },
    /// A well-formed CEF record that is not a Cybereason Malop event (a user action, a
    /// malware event, another vendor): nothing to do.
    NotMalop,
}

const BOM: char = '\u{feff}';

/// Parses one message (one frame or datagram, trailer included or not).
///
/// Bytes that are not UTF-8 and control characters are read as spaces rather than refused
/// outright: the fields a Malop event carries besides its id (a file name, a command line)
/// are the attacker's to choose, and one stray byte there must not keep the Malop off the
/// fast path. Nothing of the message but the Malop id is used, and that id must have a Malop
/// id's shape. A message with such bytes that does not then parse is [`DropReason::Binary`].
pub fn parse_message(raw: &[u8]) -> Result<Parsed, DropReason> {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_matches(|c| matches!(c, '\n' | '\r' | '\0' | ' ' | '\t'));
    if text.is_empty() {
        return Err(DropReason::MalformedSyslog);
    }
    let unwanted = |c: char| (c.is_control() && c != '\t') || c == char::REPLACEMENT_CHARACTER;
    if !text.contains(unwanted) {
        return parse_text(text);
    }
    let cleaned: String = text
        .chars()
        .map(|c| if unwanted(c) { ' ' } else { c })
        .collect();
    parse_text(&cleaned).map_err(|_| DropReason::Binary)
}

fn parse_text(text: &str) -> Result<Parsed, DropReason> {
    match split_syslog(text) {
        Ok((header, cef_text)) => parse_cef(header, cef_text),
        // A relayed record has no `CEF:` of its own: one inside a field (a command line)
        // makes the text before it no header.
        Err(reason) => match relayed_cef(text) {
            Some(cef_text) => parse_cef(HeaderKind::Rfc5424, &cef_text),
            None => Err(reason),
        },
    }
}

/// The CEF record of a message a relay re-wrote as RFC 5424 after reading `CEF:` as the
/// original's tag (rsyslog does): APP-NAME `CEF`, the message `0|Cybereason|...`.
fn relayed_cef(text: &str) -> Option<String> {
    // Most messages that reach here are junk: parse again only what can be such a relay's.
    if !(text.starts_with('<') && text.contains(" CEF ")) {
        return None;
    }
    let parsed = syslog_loose::parse_message(text, syslog_loose::Variant::RFC5424);
    let msg = parsed.msg.trim_start();
    let version_first = msg.split_once('|').is_some_and(|(version, _)| {
        !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())
    });
    (matches!(parsed.protocol, syslog_loose::Protocol::RFC5424(_))
        && parsed.appname == Some("CEF")
        && version_first)
        .then(|| format!("CEF:{msg}"))
}

fn parse_cef(header: HeaderKind, cef_text: &str) -> Result<Parsed, DropReason> {
    let record = cef::parse(cef_text).map_err(|_| DropReason::MalformedCef)?;
    malop_event(&record).map(|found| match found {
        Some((malop_id, event)) => Parsed::Malop {
            malop_id,
            event,
            header,
        },
        None => Parsed::NotMalop,
    })
}

/// Separates the syslog header (checked, then discarded) from the CEF record.
fn split_syslog(text: &str) -> Result<(HeaderKind, &str), DropReason> {
    let text = text.trim_start_matches(BOM);
    if text.starts_with("CEF:") {
        return Ok((HeaderKind::Bare, text));
    }
    let start = cef_start(text).ok_or(DropReason::NotCef)?;
    let header = text[..start].trim_end_matches([' ', BOM]);
    Ok((header_kind(header)?, &text[start..]))
}

/// The first `CEF:` that follows a space or a byte-order mark.
fn cef_start(text: &str) -> Option<usize> {
    text.match_indices("CEF:")
        .map(|(i, _)| i)
        .find(|&i| text[..i].ends_with([' ', BOM]))
}

/// Checks that `header` is a whole syslog header with nothing after it.
fn header_kind(header: &str) -> Result<HeaderKind, DropReason> {
    match header_kind_exact(header) {
        Err(reason) => match without_fraction(header) {
            Some(plain) => header_kind_exact(&plain),
            None => Err(reason),
        },
        found => found,
    }
}

/// `header` without the fraction of its first `HH:MM:SS.fff` time: an RFC 3164 timestamp
/// with fractional seconds, as syslog-ng writes with `frac-digits`, which the parser reads
/// no further than the seconds.
fn without_fraction(header: &str) -> Option<String> {
    let b = header.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let start = (0..b.len()).find(|&i| {
        [0, 1, 3, 4, 6, 7].iter().all(|&k| digit(i + k))
            && b.get(i + 2) == Some(&b':')
            && b.get(i + 5) == Some(&b':')
            && b.get(i + 8) == Some(&b'.')
            && digit(i + 9)
    })? + 8;
    let end = (start + 1..=b.len())
        .find(|&i| !digit(i))
        .unwrap_or(b.len());
    Some(format!("{}{}", &header[..start], &header[end..]))
}

fn header_kind_exact(header: &str) -> Result<HeaderKind, DropReason> {
    let message = syslog_loose::parse_message_with_year_exact_tz(
        header,
        // The header's time is never used; a leap year keeps `Feb 29` parseable.
        |_| 2000,
        Some(chrono::Utc),
        syslog_loose::Variant::Either,
    )
    .map_err(|_| DropReason::MalformedSyslog)?;
    if !message.msg.trim().is_empty() {
        return Err(DropReason::MalformedSyslog);
    }
    Ok(match message.protocol {
        syslog_loose::Protocol::RFC5424(_) => HeaderKind::Rfc5424,
        syslog_loose::Protocol::RFC3164 => HeaderKind::Rfc3164,
    })
}

/// The Malop id and event of a Cybereason Malop-class record; `None` for other records.
fn malop_event(record: &CefRecord<'_>) -> Result<Option<(MalopId, MalopEvent)>, DropReason> {
    if !is_malop_class(record) {
        return Ok(None);
    }
    let labelled = record
        .get("cs1Label")
        .is_some_and(|label| label.trim().eq_ignore_ascii_case("malopId"));
    let value = record
        .get("cs1")
        .filter(|_| labelled)
        .ok_or(DropReason::NoMalopId)?;
    let malop_id = MalopId::parse(value.trim()).map_err(|_| DropReason::BadMalopId)?;
    Ok(Some((malop_id, MalopEvent::from_name(&record.name))))
}

/// A Cybereason record whose class is `Malop` (the vendor's examples) or whose Name starts
/// with `Malop ` (forwarder samples put a number in the class field).
fn is_malop_class(record: &CefRecord<'_>) -> bool {
    let name = record.name.trim();
    record
        .device_vendor
        .trim()
        .eq_ignore_ascii_case("Cybereason")
        && (record
            .device_event_class_id
            .trim()
            .eq_ignore_ascii_case("Malop")
            || name
                .get(..6)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("Malop ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "11.-7780537507363356527";

    fn malop(text: &str) -> (MalopId, MalopEvent, HeaderKind) {
        match parse_message(text.as_bytes()) {
            Ok(Parsed::Malop {
                malop_id,
                event,
                header,
            }) => (malop_id, event, header),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn headers() {
        let cef =
            format!("CEF:0|Cybereason|Cybereason|1.0|1|Malop Created|5|cs1={ID} cs1Label=MalopId");
        for (text, kind) in [
            (cef.clone(), HeaderKind::Bare),
            (format!("\u{feff}{cef}\r\n"), HeaderKind::Bare),
            (
                format!("<134>1 2024-05-16T03:10:41.123Z cr-server cybereason - - - {cef}"),
                HeaderKind::Rfc5424,
            ),
            (
                format!(
                    "<134>1 2024-05-16T03:10:41Z cr-server app 12 ID7 [x@1 a=\"b\"] \u{feff}{cef}"
                ),
                HeaderKind::Rfc5424,
            ),
            (
                format!("<134>May 16 03:10:41 admin-host auditSyslogLogger {cef}"),
                HeaderKind::Rfc3164,
            ),
            (
                format!("May 16 03:10:41 admin-host auditSyslogLogger {cef}"),
                HeaderKind::Rfc3164,
            ),
            (
                format!("<13>May  6 03:10:41 admin-host app[42]: {cef}"),
                HeaderKind::Rfc3164,
            ),
            (
                format!("<13>May 16 03:10:41 host {cef}"),
                HeaderKind::Rfc3164,
            ),
        ] {
            let (id, event, header) = malop(&text);
            assert_eq!(id.as_str(), ID, "{text}");
            assert_eq!(event, MalopEvent::Created, "{text}");
            assert_eq!(header, kind, "{text}");
        }
    }

    #[test]
    fn drops_with_reasons() {
        let ok_ext = format!("cs1Label=malopId cs1={ID}");
        for (text, reason) in [
            (b"\xff\xfe CEF:0|".to_vec(), DropReason::Binary),
            (
                format!("CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|{ok_ext}\u{0}x").into_bytes(),
                DropReason::Binary,
            ),
            (b"hello world".to_vec(), DropReason::NotCef),
            (b"   \r\n".to_vec(), DropReason::MalformedSyslog),
            (
                format!("garbage here CEF:0|Cybereason|Cybereason|1.0|1|Malop Created|5|{ok_ext}").into_bytes(),
                DropReason::MalformedSyslog,
            ),
            (
                format!("<134>May 16 03:10:41 host app: text CEF:0|Cybereason|Cybereason|1.0|1|Malop Created|5|{ok_ext}").into_bytes(),
                DropReason::MalformedSyslog,
            ),
            (b"CEF:0|Cybereason|Cybereason|1.0|1|Malop Cre".to_vec(), DropReason::MalformedCef),
            (
                b"CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs2=x".to_vec(),
                DropReason::NoMalopId,
            ),
            (
                format!("CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=suspect cs1={ID}").into_bytes(),
                DropReason::NoMalopId,
            ),
            (
                b"CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1=../../etc".to_vec(),
                DropReason::BadMalopId,
            ),
            (
                format!("CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1={ID} cs1=11.1").into_bytes(),
                DropReason::NoMalopId,
            ),
            (
                format!("CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1Label=x cs1={ID}").into_bytes(),
                DropReason::NoMalopId,
            ),
        ] {
            assert_eq!(
                parse_message(&text),
                Err(reason),
                "{}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn other_records_are_not_malop_events() {
        for text in [
            "CEF:0|Cybereason|Cybereason||UserAction|General/Login|0|cs1Label=username cs1=x",
            "CEF:0|Cybereason|Cybereason||Malware|Malware Detected|5|cs1Label=malopId cs1=11.5",
            "CEF:0|Other|Thing|1|Malop|Malop Created|5|cs1Label=malopId cs1=11.5",
        ] {
            assert_eq!(
                parse_message(text.as_bytes()),
                Ok(Parsed::NotMalop),
                "{text}"
            );
        }
    }

    #[test]
    fn class_in_capitals_and_unknown_names() {
        let (_, event, _) = malop(&format!(
            "CEF:1|Cybereason|Cybereason||MALOP|Malop Process Added|5|cs1Label=MALOPID cs1={ID}"
        ));
        assert_eq!(event, MalopEvent::Other);
        let (_, event, _) = malop(&format!(
            "CEF:0|Cybereason|Cybereason|1.0|6|Malop User Added|5|cs1={ID} cs1Label=MalopId"
        ));
        assert_eq!(event, MalopEvent::Other);
    }

    /// syslog-ng writes RFC 3164 times with fractional seconds (`frac-digits`).
    #[test]
    fn an_rfc3164_time_with_fractional_seconds_is_a_header() {
        let (id, _, header) = malop(&format!(
            "<134>May 16 03:10:41.123 relay-1 cybereason: CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1={ID}"
        ));
        assert_eq!((id.as_str(), header), (ID, HeaderKind::Rfc3164));
    }

    /// rsyslog reads `CEF:` as the tag of a message without a header and, forwarding as RFC
    /// 5424, writes it as the APP-NAME: the record is read back whole.
    #[test]
    fn a_relay_that_took_cef_for_the_tag_loses_no_event() {
        let (id, event, header) = malop(&format!(
            "<134>1 2024-05-16T03:10:41.123Z relay-1 CEF - - - 1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1={ID}"
        ));
        assert_eq!(
            (id.as_str(), event, header),
            (ID, MalopEvent::Created, HeaderKind::Rfc5424)
        );
        // A `CEF:` in one of its fields does not hide it.
        let (id, _, _) = malop(&format!(
            "<134>1 2024-05-16T03:10:41Z relay-1 CEF - - - 1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1={ID} cs3=cmd /c echo CEF:x"
        ));
        assert_eq!(id.as_str(), ID);
        assert_eq!(
            parse_message(b"<134>1 2024-05-16T03:10:41Z relay-1 app - - - 1|Cybereason|x"),
            Err(DropReason::NotCef)
        );
    }

    /// A key given twice with one value, as a forwarder that adds its own fields may do,
    /// loses no event.
    #[test]
    fn repeated_keys_that_agree_lose_no_event() {
        let (id, event, _) = malop(&format!(
            "CEF:1|Cybereason|Cybereason||Malop|Malop Updated|10|cs1Label=malopId cs1={ID} cs2=a cs2=b cs1={ID}"
        ));
        assert_eq!((id.as_str(), event), (ID, MalopEvent::Updated));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic sweep of awkward inputs: prefixes of a valid message, every
        // single-byte corruption of it, and pseudo-random bytes.
        let valid = format!(
            "<134>1 2024-05-16T03:10:41Z h a - - - CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1={ID} cs6=a\\=b"
        );
        let bytes = valid.as_bytes();
        for end in 0..bytes.len() {
            let _ = parse_message(&bytes[..end]);
        }
        for i in 0..bytes.len() {
            for b in [0u8, b'|', b'\\', b'=', b' ', b'<', 0xc3, 0xff] {
                let mut copy = bytes.to_vec();
                copy[i] = b;
                let _ = parse_message(&copy);
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let len = (state % 300) as usize;
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buf.push(b" <>|\\=CEF:0123456789Malopcs1Label"[(state % 33) as usize]);
            }
            let _ = parse_message(&buf);
        }
    }
}
