//! Keeping secrets out of text: [`Secret`] (the domain's, never printed) and [`scrub`], which
//! redacts a password from what a server or a transport error echoes.

pub use riposte_domain::Secret;

/// Redacts `secret` where it can appear in text that goes into an error or a log (a
/// server echoing a login form, a transport error): the value of any `password` or
/// `jsessionid` field (`password=...` in a form, `"password": "..."` in JSON), and the
/// secret itself, raw or form-encoded, where it stands as a whole token, not inside a longer
/// word (also where an excerpt cuts it short at its end). So a short password never mangles
/// unrelated words ("tcp" stays "tcp" for the password "p").
pub(crate) fn scrub(secret: &Secret, text: &str) -> String {
    let mut out = redact_secret_fields(text);
    let secret = secret.expose();
    if secret.is_empty() {
        return out;
    }
    let encoded = form_escape(secret);
    for needle in [secret, encoded.as_str()] {
        out = replace_tokens(&out, needle);
        redact_cut_secret(&mut out, needle);
    }
    out
}

/// Redacts the start of `needle` where `text` ends with it as a token of its own: an excerpt
/// cut inside an echoed secret still carries its first characters.
fn redact_cut_secret(text: &mut String, needle: &str) {
    let starts: Vec<&str> = needle
        .char_indices()
        .skip(1)
        .map(|(at, _)| &needle[..at])
        .collect();
    let cut = starts.into_iter().rev().find(|start| {
        text.strip_suffix(start)
            .is_some_and(|before| before.chars().next_back().is_none_or(|c| !is_word(c)))
    });
    if let Some(start) = cut {
        text.truncate(text.len() - start.len());
        text.push_str(REDACTED);
    }
}

const REDACTED: &str = "[redacted]";

/// `application/x-www-form-urlencoded` encoding of one value (as the login form sends it).
fn form_escape(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Whether `c` continues a word, so a match next to it is part of a longer token.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `text` with every occurrence of `needle` that stands as a whole token replaced.
fn replace_tokens(text: &str, needle: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(needle) {
        let (before, after) = (&rest[..at], &rest[at + needle.len()..]);
        let bounded = before.chars().next_back().is_none_or(|c| !is_word(c))
            && after.chars().next().is_none_or(|c| !is_word(c));
        out.push_str(before);
        out.push_str(if bounded { REDACTED } else { needle });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The fields whose values are secret whatever they are: the password, and the session
/// cookie (`;jsessionid=` in a Java server's links, `JSESSIONID=` in a cookie header).
const SECRET_FIELDS: [&str; 2] = ["password", "jsessionid"];

/// `text` with the values of every [`SECRET_FIELDS`] field redacted.
fn redact_secret_fields(text: &str) -> String {
    SECRET_FIELDS
        .iter()
        .fold(text.to_owned(), |text, field| redact_field(&text, field))
}

/// `text` with the values of `field=` form fields and `"field": "..."` JSON members
/// redacted (the field's name in any case; `field` in lower case).
fn redact_field(text: &str, field: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(field) {
        let key_end = from + found + field.len();
        from = key_end;
        let rest = &text[key_end..];
        let value = if let Some(v) = rest.strip_prefix('=') {
            // Form field: the value runs to `&`, whitespace, a quote or `<`.
            let len = v
                .find(|c: char| c == '&' || c == '"' || c == '<' || c.is_whitespace())
                .unwrap_or(v.len());
            Some((key_end + 1, len))
        } else {
            json_string_value(rest).map(|(start, len)| (key_end + start, len))
        };
        if let Some((start, len)) = value.filter(|(_, len)| *len > 0) {
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = start + len;
            from = copied;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// After a secret field's name: `": "value"` → the value's offset and length in `rest`.
fn json_string_value(rest: &str) -> Option<(usize, usize)> {
    let after_quote = rest.strip_prefix('"')?;
    let trimmed = after_quote.trim_start();
    let after_colon = trimmed.strip_prefix(':')?.trim_start();
    let value = after_colon.strip_prefix('"')?;
    let start = rest.len() - value.len();
    let mut len = 0;
    let mut escaped = false;
    for c in value.chars() {
        if c == '"' && !escaped {
            return Some((start, len));
        }
        escaped = c == '\\' && !escaped;
        len += c.len_utf8();
    }
    Some((start, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_scrubbed_where_it_stands_alone() {
        let s = Secret::new("hunter2");
        assert_eq!(scrub(&s, "pw=hunter2;"), "pw=[redacted];");
    }

    #[test]
    fn the_session_cookie_is_redacted_wherever_a_page_echoes_it() {
        let s = Secret::new("unrelated");
        assert_eq!(
            scrub(&s, r#"<a href="/login.html;jsessionid=AB12CD?x=1">"#),
            r#"<a href="/login.html;jsessionid=[redacted]">"#
        );
        assert_eq!(
            scrub(&s, "Set-Cookie: JSESSIONID=AB12CD; Path=/"),
            "Set-Cookie: JSESSIONID=[redacted] Path=/"
        );
    }

    #[test]
    fn a_secret_cut_at_the_end_of_an_excerpt_is_redacted() {
        let s = Secret::new("hunter2!x");
        assert_eq!(scrub(&s, "echo: hunt"), "echo: [redacted]");
        assert_eq!(
            scrub(&s, "echo: hunter2%21"),
            "echo: [redacted]",
            "form-encoded"
        );
        assert_eq!(scrub(&s, "the hunting"), "the hunting", "not at the end");
        assert_eq!(scrub(&s, "a shunt"), "a shunt", "inside a longer word");
    }

    #[test]
    fn a_short_password_does_not_mangle_other_words() {
        let p = Secret::new("p");
        let text = "tcp connect error: Connection refused (os error 111); p";
        assert_eq!(
            scrub(&p, text),
            "tcp connect error: Connection refused (os error 111); [redacted]"
        );
        assert_eq!(scrub(&Secret::new("t"), "tcp"), "tcp");
    }

    #[test]
    fn password_fields_are_redacted_whatever_the_secret() {
        let s = Secret::new("other");
        assert_eq!(
            scrub(&s, "username=a%40b&password=s3cr%26t&x=1"),
            "username=a%40b&password=[redacted]&x=1"
        );
        assert_eq!(
            scrub(&s, r#"{"user":"a","password" : "p\"w","n":1}"#),
            r#"{"user":"a","password" : "[redacted]","n":1}"#
        );
        assert_eq!(scrub(&s, "the password is wrong"), "the password is wrong");
    }

    #[test]
    fn the_secret_is_redacted_raw_and_form_encoded() {
        let s = Secret::new("a b&c");
        assert_eq!(scrub(&s, "echo: a+b%26c."), "echo: [redacted].");
        assert_eq!(scrub(&s, "echo: [a b&c]"), "echo: [[redacted]]");
    }
}
