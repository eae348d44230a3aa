//! RFC 6587 framing of syslog over a stream (TCP, TLS), detected per message.
//!
//! A frame that starts with a count (a digit `1`-`9`, at most [`MAX_COUNT_DIGITS`] digits,
//! then a space) is octet-counted (`MSG-LEN SP MSG`); any other frame, one that starts with a
//! timestamp's digits included, runs to the next LF, or to a NUL that ends it (some senders
//! end messages with NUL: the last byte buffered, or one before `<`, `CEF:` or a gap). This is
//! non-transparent framing; a CR before the end and NUL, CR, LF or space bytes between frames
//! are ignored. Memory is bounded by the limit:
//!
//! - an octet-counted message over the limit is skipped as its bytes arrive (none is kept),
//!   counted once as [`DropReason::Oversized`], and decoding carries on after it;
//! - a newline-framed message longer than the limit is discarded up to its end, counted once
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
    /// What is being discarded of a message over the limit.
    skip: Skip,
    /// Bytes at the front of the buffer already searched for the end of a newline-framed
    /// message (a message trickling in a byte at a time is searched once, not once a byte).
    searched: usize,
}

/// What the decoder is discarding of a message over the limit, as its bytes arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    /// Nothing: decoding frames.
    Nothing,
    /// A newline-framed message, up to its end.
    ToMessageEnd,
    /// An octet-counted message: this many bytes more.
    Bytes(usize),
}

/// The most digits read as an octet count (a count of up to 99,999,999 bytes, skipped when
/// over the limit): a longer run of digits starts a newline-framed message (an epoch time).
pub const MAX_COUNT_DIGITS: usize = 8;

/// The first end of a newline-framed message in `buf[from..to]`: an LF, or a NUL that is the
/// last byte buffered or comes before what only starts a message or a gap (`<`, the `C` of
/// `CEF:`, NUL, CR, LF). A NUL inside a message is content (read as a space when parsed).
fn message_end(buf: &[u8], from: usize, to: usize) -> Option<usize> {
    (from..to).find(|&i| match buf[i] {
        b'\n' => true,
        b'\0' => buf
            .get(i + 1)
            .is_none_or(|next| matches!(next, b'<' | b'C' | b'\0' | b'\r' | b'\n')),
        _ => false,
    })
}

impl FrameDecoder {
    /// A decoder that accepts messages of at most `max_message_bytes` bytes.
    pub fn new(max_message_bytes: usize) -> Self {
        Self {
            max: max_message_bytes,
            skip: Skip::Nothing,
            searched: 0,
        }
    }

    /// Decodes the next frame from the front of `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Decoded {
        if !self.discard(buf) {
            return Decoded::NeedMore;
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
        self.skip != Skip::Nothing || !buf.is_empty()
    }

    fn octet_counted(&mut self, buf: &mut BytesMut) -> Decoded {
        let digits = buf
            .iter()
            .take(MAX_COUNT_DIGITS + 1)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits <= MAX_COUNT_DIGITS && digits == buf.len() {
            return Decoded::NeedMore;
        }
        if digits > MAX_COUNT_DIGITS || buf[digits] != b' ' {
            return self.newline_framed(buf);
        }
        let len: usize = std::str::from_utf8(&buf[..digits])
            .ok()
            .and_then(|d| d.parse().ok())
            .expect("at most 8 ASCII digits are a number");
        if len > self.max {
            buf.advance(digits + 1);
            self.skip = Skip::Bytes(len);
            self.discard(buf);
            return Decoded::Dropped(DropReason::Oversized);
        }
        if buf.len() < digits + 1 + len {
            return Decoded::NeedMore;
        }
        buf.advance(digits + 1);
        Decoded::Frame(buf.split_to(len).freeze())
    }

    /// Discards what is buffered of the message being skipped; whether it is gone whole.
    fn discard(&mut self, buf: &mut BytesMut) -> bool {
        match self.skip {
            Skip::Nothing => return true,
            Skip::Bytes(left) => {
                let n = left.min(buf.len());
                buf.advance(n);
                self.skip = Skip::Bytes(left - n);
                if n < left {
                    return false;
                }
            }
            Skip::ToMessageEnd => match message_end(buf, 0, buf.len()) {
                Some(i) => buf.advance(i + 1),
                None => {
                    buf.clear();
                    return false;
                }
            },
        }
        self.skip = Skip::Nothing;
        true
    }

    fn newline_framed(&mut self, buf: &mut BytesMut) -> Decoded {
        let window = buf.len().min(self.max + 2);
        let from = self.searched.min(window);
        let found = message_end(buf, from, window);
        self.searched = if found.is_some() { 0 } else { window };
        match found {
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
                self.searched = 0;
                match message_end(buf, window, buf.len()) {
                    Some(i) => buf.advance(i + 1),
                    None => {
                        buf.clear();
                        self.skip = Skip::ToMessageEnd;
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
        // A count over the limit: its bytes are skipped as they come, none kept, and the
        // next frame is read.
        let mut buf = BytesMut::from(&b"20 0123456"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![Decoded::Dropped(DropReason::Oversized)]
        );
        assert!(buf.is_empty() && d.in_frame(&buf), "skipping the rest");
        buf.extend_from_slice(b"789abcdefghij4 next");
        assert_eq!(all(&mut d, &mut buf), vec![frame_of("next")]);
        // Digits that are no count start a newline-framed message: a timestamp, an epoch
        // time longer than any count, digits and a letter.
        let mut buf = BytesMut::from(&b"2024-05-16 x\n17000000001 y\n5x z\n"[..]);
        let mut d = FrameDecoder::new(100);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![
                frame_of("2024-05-16 x"),
                frame_of("17000000001 y"),
                frame_of("5x z")
            ]
        );
    }

    /// Some senders end each message with NUL instead of LF; a NUL inside a message is
    /// content.
    #[test]
    fn nul_ends_a_newline_framed_message() {
        let mut d = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&b"<1>a\0b\0CEF:0|x\0"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![frame_of("<1>a\0b"), frame_of("CEF:0|x")]
        );
        let mut d = FrameDecoder::new(10);
        let mut buf = BytesMut::from(&b"<1>one\0<1>two\r\0<1>0123456789abc\0<1>four\0"[..]);
        assert_eq!(
            all(&mut d, &mut buf),
            vec![
                frame_of("<1>one"),
                frame_of("<1>two"),
                Decoded::Dropped(DropReason::Oversized),
                frame_of("<1>four")
            ]
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
