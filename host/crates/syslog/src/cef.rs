//! ArcSight Common Event Format (CEF) versions 0 and 1: a strict parser and the escaping
//! rules used to write it.
//!
//! No maintained Rust crate parses CEF (crates.io has serialisers only, and parsers buried in
//! large runtimes), so this one is written here, after the ArcSight CEF specification:
//!
//! - the header is `CEF:Version|Device Vendor|Device Product|Device Version|Device Event Class
//!   ID|Name|Severity|Extension`; in header fields `\|` is a pipe and `\\` a backslash;
//! - the extension is `key=value` pairs separated by spaces; values may contain spaces; in
//!   values `\=` is `=`, `\\` is `\`, `\n` and `\r` are a newline and a carriage return. A new
//!   pair starts at a space followed by a key (letters, digits, `_`, `.`) and an `=`.
//!
//! Anything else is refused with a [`CefError`]: a missing header field, an unknown version,
//! a duplicated key, text before the first pair, more than [`MAX_EXTENSION_FIELDS`] pairs.

use std::borrow::Cow;

/// The most extension pairs one record may carry.
pub const MAX_EXTENSION_FIELDS: usize = 256;

/// The CEF version of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CefVersion {
    /// `CEF:0` (CEF 0.1 to 1.x specifications).
    V0,
    /// `CEF:1` (CEF 1.x with the version field set to 1, as Cybereason's own examples).
    V1,
}

/// One parsed CEF record; fields borrow from the input unless an escape had to be undone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CefRecord<'a> {
    /// The `CEF:` version.
    pub version: CefVersion,
    /// Device Vendor (`Cybereason`).
    pub device_vendor: Cow<'a, str>,
    /// Device Product.
    pub device_product: Cow<'a, str>,
    /// Device Version (empty in Cybereason's own examples).
    pub device_version: Cow<'a, str>,
    /// Device Event Class ID (`Malop`, or a number in forwarder samples).
    pub device_event_class_id: Cow<'a, str>,
    /// Name (`Malop Created`, ...).
    pub name: Cow<'a, str>,
    /// Severity, as written.
    pub severity: Cow<'a, str>,
    /// The extension pairs, in message order; a key may appear more than once.
    pub extension: Vec<(&'a str, Cow<'a, str>)>,
}

impl<'a> CefRecord<'a> {
    /// The value of extension key `key` (exact, case-sensitive as CEF keys are). A key given
    /// twice with the same value reads as that value; with different values, as absent:
    /// a contradictory record is never read as one of its claims.
    pub fn get(&self, key: &str) -> Option<&str> {
        let mut values = self
            .extension
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.as_ref());
        let first = values.next()?;
        values.all(|v| v == first).then_some(first)
    }
}

/// Why a text is not a CEF record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CefError {
    /// The text does not start with `CEF:`.
    #[error("not CEF: the text does not start with `CEF:`")]
    NotCef,
    /// The version is neither 0 nor 1.
    #[error("unsupported CEF version (expected `CEF:0` or `CEF:1`)")]
    UnsupportedVersion,
    /// Fewer than the seven header fields before the extension.
    #[error("truncated CEF header: {found} of 7 `|`-separated fields before the extension")]
    MissingHeaderFields {
        /// Header fields found.
        found: usize,
    },
    /// Text that is not a `key=value` pair before the first pair of the extension.
    #[error("CEF extension does not start with a `key=value` pair")]
    StrayText,
    /// More than [`MAX_EXTENSION_FIELDS`] pairs.
    #[error("CEF extension has more than {MAX_EXTENSION_FIELDS} pairs")]
    TooManyFields,
}

/// Parses one CEF record (no syslog header: see [`crate::parse`] for whole messages).
pub fn parse(text: &str) -> Result<CefRecord<'_>, CefError> {
    let rest = text.strip_prefix("CEF:").ok_or(CefError::NotCef)?;
    let (fields, extension) = split_header(rest)?;
    let version = match fields[0].trim() {
        "0" => CefVersion::V0,
        "1" => CefVersion::V1,
        _ => return Err(CefError::UnsupportedVersion),
    };
    let [_, vendor, product, dev_version, class, name, severity] = fields.map(unescape_header);
    Ok(CefRecord {
        version,
        device_vendor: vendor,
        device_product: product,
        device_version: dev_version,
        device_event_class_id: class,
        name,
        severity,
        extension: parse_extension(extension)?,
    })
}

/// Splits the seven header fields (still escaped) from the extension.
fn split_header(text: &str) -> Result<([&str; 7], &str), CefError> {
    let mut fields = [""; 7];
    let mut found = 0;
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && found < 7 {
        match bytes[i] {
            b'\\' => i += 2,
            b'|' => {
                fields[found] = &text[start..i];
                found += 1;
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if found < 7 {
        return Err(CefError::MissingHeaderFields { found });
    }
    Ok((fields, &text[start..]))
}

fn unescape_header(field: &str) -> Cow<'_, str> {
    unescape(field, |c| match c {
        '|' => Some('|'),
        '\\' => Some('\\'),
        _ => None,
    })
}

fn unescape_value(value: &str) -> Cow<'_, str> {
    unescape(value, |c| match c {
        '=' => Some('='),
        '\\' => Some('\\'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        _ => None,
    })
}

/// Undoes `\x` escapes that `map` knows; unknown ones stay as written (lenient, as most
/// CEF producers leave Windows paths unescaped).
fn unescape(text: &str, map: impl Fn(char) -> Option<char>) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(next) => match map(next) {
                Some(plain) => out.push(plain),
                None => {
                    out.push('\\');
                    out.push(next);
                }
            },
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// Where each pair starts: (start of key, position of its `=`).
fn key_positions(ext: &str) -> Vec<(usize, usize)> {
    let bytes = ext.as_bytes();
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || bytes[i - 1] == b' ';
        if at_boundary && is_key_byte(bytes[i]) {
            let mut j = i;
            while j < bytes.len() && is_key_byte(bytes[j]) {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'=' {
                keys.push((i, j));
                i = j + 1;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    keys
}

fn parse_extension(ext: &str) -> Result<Vec<(&str, Cow<'_, str>)>, CefError> {
    let keys = key_positions(ext);
    let first = keys.first().map_or(ext.len(), |(start, _)| *start);
    if !ext[..first].trim().is_empty() {
        return Err(CefError::StrayText);
    }
    if keys.len() > MAX_EXTENSION_FIELDS {
        return Err(CefError::TooManyFields);
    }
    let mut pairs: Vec<(&str, Cow<'_, str>)> = Vec::with_capacity(keys.len());
    for (n, (start, eq)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map_or(ext.len(), |(next, _)| *next);
        let key = &ext[*start..*eq];
        let raw = ext[eq + 1..end].trim_end_matches([' ', '\t']);
        pairs.push((key, unescape_value(raw)));
    }
    Ok(pairs)
}

/// Escapes a header field: `\` and `|`; line breaks become spaces (they would end the record).
pub fn escape_header(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an extension value: `\`, `=`, newline and carriage return.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `key` can be written as an extension key (letters, digits, `_`, `.`; not empty).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(is_key_byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_escapes_and_values_with_spaces() {
        let rec = parse(
            r"CEF:0|Cyber\|eason|Prod\\uct|1.0|Malop|Malop Created|5|cs1=11.-1 msg=two words here act=a\=b path=C:\\temp\\x note=l1\nl2\r",
        )
        .unwrap();
        assert_eq!(rec.version, CefVersion::V0);
        assert_eq!(rec.device_vendor, "Cyber|eason");
        assert_eq!(rec.device_product, r"Prod\uct");
        assert_eq!(rec.name, "Malop Created");
        assert_eq!(rec.get("msg"), Some("two words here"));
        assert_eq!(rec.get("act"), Some("a=b"));
        assert_eq!(rec.get("path"), Some(r"C:\temp\x"));
        assert_eq!(rec.get("note"), Some("l1\nl2\r"));
    }

    #[test]
    fn unescaped_pipe_and_equals_inside_a_value_are_kept() {
        let rec = parse("CEF:1|V|P||Malop|N|1|a=x | y b=http://h/?q=1 c=3").unwrap();
        assert_eq!(rec.version, CefVersion::V1);
        assert_eq!(rec.get("a"), Some("x | y"));
        assert_eq!(rec.get("b"), Some("http://h/?q=1"));
        assert_eq!(rec.get("c"), Some("3"));
    }

    #[test]
    fn empty_extension_and_empty_values() {
        assert!(parse("CEF:0|V|P|1|C|N|1|").unwrap().extension.is_empty());
        let rec = parse("CEF:0|V|P|1|C|N|1|a= b=2").unwrap();
        assert_eq!(rec.get("a"), Some(""));
        assert_eq!(rec.get("b"), Some("2"));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse("CEF0|a"), Err(CefError::NotCef));
        assert_eq!(
            parse("CEF:2|V|P|1|C|N|1|"),
            Err(CefError::UnsupportedVersion)
        );
        assert_eq!(
            parse("CEF:0|V|P|1|C|N"),
            Err(CefError::MissingHeaderFields { found: 5 })
        );
        assert_eq!(
            parse(r"CEF:0|V|P|1|C|N\|1"),
            Err(CefError::MissingHeaderFields { found: 5 })
        );
        assert_eq!(
            parse("CEF:0|V|P|1|C|N|1|junk a=1"),
            Err(CefError::StrayText)
        );
        // A key given twice: read when its values agree, absent when they differ.
        let twice = parse("CEF:0|V|P|1|C|N|1|a=1 b=2 a=1 b=3").unwrap();
        assert_eq!((twice.get("a"), twice.get("b")), (Some("1"), None));
        let many: Vec<String> = (0..=MAX_EXTENSION_FIELDS)
            .map(|i| format!("k{i}=v"))
            .collect();
        assert_eq!(
            parse(&format!("CEF:0|V|P|1|C|N|1|{}", many.join(" "))),
            Err(CefError::TooManyFields)
        );
    }

    #[test]
    fn escaping_round_trips() {
        let value = "a=b\\c\nd\re | f";
        let header = "x|y\\z";
        let line = format!(
            "CEF:0|{}|P|1|C|N|1|k={} z=1",
            escape_header(header),
            escape_value(value)
        );
        let rec = parse(&line).unwrap();
        assert_eq!(rec.device_vendor, header);
        assert_eq!(rec.get("k"), Some(value));
        assert_eq!(rec.get("z"), Some("1"));
    }

    #[test]
    fn a_trailing_backslash_is_kept() {
        let rec = parse("CEF:0|V|P|1|C|N|1|a=x\\").unwrap();
        assert_eq!(rec.get("a"), Some("x\\"));
    }
}
