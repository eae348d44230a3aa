//! RFC 6587 framing of syslog over a stream (TCP, TLS), detected per message.
//!
//! A frame that starts with a digit `1`-`9` is octet-counted (`MSG-LEN SP MSG`); any other
//! frame runs to the next LF (non-transparent framing; a CR before the LF and NUL, CR, LF or
//! space bytes between frames are ignored). Memory is bounded by the limit:
//!
//! - an octet count over the limit (or longer than the limit has digits) is refused before any
//!   of the message is read, and the stream cannot be resynchronised: the decoder reports a
//!   fatal [`DropReason::Oversized`];
//! - a newline-framed message longer than the limit is discarded up to its LF, counted once
//!   as [`DropReason::Oversized`], and decoding carries on with the next frame.

use crate::stats::DropReason;
use bytes::{Buf, Bytes, BytesMut};

/// What the decoder found in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// One whole message (without framing; a trailing CR/LF may remain for octet counting).
    Frame(Bytes),
    /// A message was dropped; decoding can go on.
    Dropped(DropReason),
    /// The stream cannot be decoded any further: close it.
    Fatal(DropReason),
    /// More bytes are needed.
    NeedMore,
}

/// A per-message RFC 6587 decoder with a size limit.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max: usize,
    max_digits: usize,
    skipping: bool,
}

impl FrameDecoder {
    /// A decoder that accepts messages of at most `max_message_bytes` bytes.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            max: max_message_bytes,
            max_digits: max_message_bytes.to_string().len(),
            skipping: false,
        }
    }

    /// Decodes the next frame from the front of `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        if self.skipping {
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    buf.advance(i + 1);
                    self.skipping = false;
                }
                None => {
                    buf.clear();
                    return Decoded::NeedMore;
                }
            }
        }
        let gap = buf
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r' | b'\0' | b' '))
            .count();
        buf.advance(gap);
        match buf.first() {
            None => Decoded::NeedMore,
            Some(b'1'..=b'9') => self.octet_counted(buf),
            Some(_) => self.newline_framed(buf),
        }
    }

    /// Whether part of a frame is buffered (or being skipped): the stream is mid-message.
    pub fn in_frame(&self, buf: &BytesMut) -> bool {
        self.skipping || !buf.is_empty()
    }

    fn octet_counted(&mut self, buf: &mut BytesMut) -> Decoded {
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > self.max_digits {
            return Decoded::Fatal(DropReason::Oversized);
        }
        if digits == buf.len() {
            return Decoded::NeedMore;
        }
        if buf[digits] != b' ' {
            return Decoded::Fatal(DropReason::BadFraming);
        }
        let len: usize = std::str::from_utf8(&buf[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .unwrap_or(usize::MAX);
        if len > self.max {
            return Decoded::Fatal(DropReason::Oversized);
        }
        if buf.len() < digits + 1 + len {
            return Decoded::NeedMore;
        }
        buf.advance(digits + 1);
        Decoded::Frame(buf.split_to(len).freeze())
    }

    fn newline_framed(&mut self, buf: &mut BytesMut) -> Decoded {
        let window = buf.len().min(self.max + 2);
        match buf[..window].iter().position(|b| *b == b'\n') {
            Some(i) => {
                let mut end = i;
                if end > 0 && buf[end - 1] == b'\r' {
                    end -= 1;
                }
                if end > self.max {
                    buf.advance(i + 1);
                    return Decoded::Dropped(DropReason::Oversized);
                }
                let frame = buf.split_to(end).freeze();
                buf.advance(i + 1 - end);
                Decoded::Frame(frame)
            }
            None if buf.len() > self.max + 1 => {
                match buf.iter().position(|b| *b == b'\n') {
                    Some(i) => buf.advance(i + 1),
                    None => {
                        buf.clear();
                        self.skipping = true;
                    }
                }
                Decoded::Dropped(DropReason::Oversized)
            }
            None => Decoded::NeedMore,
        }
    }
}

/// Frames `message` for a stream: octet counting (`LEN SP MSG`) or a trailing LF.
pub fn frame(message: &[u8], octet_counting: bool, out: &mut Vec<u8>) {
    if octet_counting {
        out.extend_from_slice(message.len().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(message);
    } else {
        out.extend_from_slice(message);
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut FrameDecoder, buf: &mut BytesMut) -> Vec<Decoded> {
        let mut out = Vec::new();
        loop {
            match decoder.decode(buf) {
                Decoded::NeedMore => return out,
                d @ Decoded::Fatal(_) => {
                    out.push(d);
                    return out;
                }
                d => out.push(d),
            }
        }
    }

    fn frame_of(text: &str) -> Decoded {
        Decoded::Frame(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn mixed_framing_per_message() {
        let mut d = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&b"5 hello<1>a b\r\n\n3 xyzCEF:0|x\n12 with\nnewline"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![
                frame_of("hello"),
                frame_of("<1>a b"),
                frame_of("xyz"),
                frame_of("CEF:0|x"),
                frame_of("with\nnewline"),
            ]
        );
        assert!(!d.in_frame(&buf));
    }

    #[test]
    fn byte_by_byte_gives_the_same_frames() {
        let input = b"5 hello<1>a b\n13 octet\ncounted";
        let mut d = FrameDecoder::new(100);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in input {
            buf.extend_from_slice(&[*b]);
            got.extend(all(&mut d, &mut buf));
        }
        assert_eq!(
            got,
            vec![
                frame_of("hello"),
                frame_of("<1>a b"),
                frame_of("octet\ncounted")
            ]
        );
    }

    #[test]
    fn limits() {
        let mut d = FrameDecoder::new(10);
        let mut buf = BytesMut::from(&b"10 0123456789"[..]);
        assert_eq!(all(&mut d, &mut buf), vec![frame_of("0123456789")]);
        let mut buf = BytesMut::from(&b"11 "[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![Decoded::Fatal(DropReason::Oversized)]
        );
        // More digits than the limit has: refused before the space arrives.
        let mut buf = BytesMut::from(&b"000"[..]);
        buf[0] = b'1';
        assert_eq!(
            all(&mut d, &mut buf),
            vec![Decoded::Fatal(DropReason::Oversized)]
        );
        let mut buf = BytesMut::from(&b"99999999999999999999999 x"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![Decoded::Fatal(DropReason::Oversized)]
        );
        let mut buf = BytesMut::from(&b"5x hello"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![Decoded::Fatal(DropReason::BadFraming)]
        );
    }

    #[test]
    fn an_oversized_line_is_skipped_and_decoding_resumes() {
        let mut d = FrameDecoder::new(10);
        let mut buf = BytesMut::from(&b"<1>0123456789abcdef"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![Decoded::Dropped(DropReason::Oversized)]
        );
        assert!(d.in_frame(&buf), "still inside the oversized line");
        buf.extend_from_slice(b"more junk\n<1>ok\n");
        assert_eq!(all(&mut d, &mut buf), vec![frame_of("<1>ok")]);
        // The line after an oversized one, already buffered, is kept.
        let mut buf = BytesMut::from(&b"<1>0123456789abcdef\n<1>next\n"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![Decoded::Dropped(DropReason::Oversized), frame_of("<1>next")]
        );
        // A line exactly at the limit passes, with or without CR; one byte more does not.
        let mut buf = BytesMut::from(&b"<1>4567890\r\n<1>45678901\n"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![
                frame_of("<1>4567890"),
                Decoded::Dropped(DropReason::Oversized)
            ]
        );
    }

    #[test]
    fn framing_round_trips() {
        let mut out = Vec::new();
        frame(b"a b\nc", true, &mut out);
        frame(b"<1>x", false, &mut out);
        let mut buf = BytesMut::from(&out[..]);
        let mut d = FrameDecoder::new(100);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![frame_of("a b\nc"), frame_of("<1>x")]
        );
    }
}
