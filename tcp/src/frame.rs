//! Framing, without sockets: splitting received bytes into lines within a length limit
//! ([`LineBuf`]) and reading one line as a request ([`parse_line`]).
//!
//! The buffer is released whenever it holds no partial line, so an idle connection keeps no
//! allocation; it grows in small steps only while a line is being received.

use serde_json::Value;

/// Bytes to make room for before each read.
const READ_CHUNK: usize = 1024;

/// Received bytes not yet taken as lines.
#[derive(Debug)]
pub(crate) struct LineBuf {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes.
    start: usize,
    max_line: usize,
}

/// The next line of a [`LineBuf`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<'a> {
    /// A complete line, without its `\n`, borrowed from the buffer until the next call.
    Line(&'a [u8]),
    /// No complete line yet, and what is buffered is within the limit.
    Incomplete,
    /// A line over the limit (complete or not).
    TooLong,
}

impl LineBuf {
    pub(crate) fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            max_line,
        }
    }

    /// Takes the next complete line. The buffer is given back to the allocator when a call finds
    /// nothing left in it, i.e. at the latest by the call that answers [`Next::Incomplete`].
    pub(crate) fn next_line(&mut self) -> Next<'_> {
        if self.start == self.buf.len() {
            // Nothing partial left: give the memory back.
            self.buf = Vec::new();
            self.start = 0;
            return Next::Incomplete;
        }
        let rest = &self.buf[self.start..];
        match memchr::memchr(b'\n', rest) {
            Some(len) if len > self.max_line => Next::TooLong,
            Some(len) => {
                let start = self.start;
                self.start += len + 1;
                Next::Line(&self.buf[start..start + len])
            }
            None if rest.len() > self.max_line => Next::TooLong,
            None => Next::Incomplete,
        }
    }

    /// Room for the next read: moves the partial line to the front and reserves a chunk.
    /// Returns the buffer to read into (append only).
    pub(crate) fn spare(&mut self) -> &mut Vec<u8> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    /// Whether nothing is buffered (no partial line).
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

/// One line, split into path and JSON text.
#[derive(Debug, PartialEq)]
pub(crate) enum Line<'a> {
    /// Empty or blank: ignored, no reply.
    Empty,
    /// `PATH JSON`; `json` is trimmed and empty when the line has only a path (meaning `{}`).
    Request { path: &'a str, json: &'a str },
    /// Why the line is not a request.
    Malformed(&'static str),
}

/// Splits `PATH JSON` (a trailing `\r` allowed). The JSON is not parsed here: see [`parse_body`].
pub(crate) fn split_line(line: &[u8]) -> Line<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(text) = std::str::from_utf8(line) else {
        return Line::Malformed("not UTF-8");
    };
    let text = text.trim();
    if text.is_empty() {
        return Line::Empty;
    }
    let (path, json) = match text.find([' ', '\t']) {
        Some(i) => (&text[..i], text[i..].trim_start()),
        None => (text, ""),
    };
    if !path.starts_with('/') {
        return Line::Malformed("no path");
    }
    Line::Request { path, json }
}

/// Parses a request's JSON text: an object, or `{}` when empty.
pub(crate) fn parse_body(json: &str) -> Result<Value, &'static str> {
    if json.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    match serde_json::from_str::<Value>(json) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err("JSON not an object"),
        Err(_) => Err("bad JSON"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(lb: &mut LineBuf, bytes: &[u8]) {
        lb.spare().extend_from_slice(bytes);
    }

    /// A line read as a request, the way the connection reads it.
    #[derive(Debug, PartialEq)]
    enum Parsed {
        Empty,
        Request { path: String, body: Value },
        Malformed(&'static str),
    }

    fn parse_line(line: &[u8]) -> Parsed {
        match split_line(line) {
            Line::Empty => Parsed::Empty,
            Line::Malformed(why) => Parsed::Malformed(why),
            Line::Request { path, json } => match parse_body(json) {
                Ok(body) => Parsed::Request {
                    path: path.into(),
                    body,
                },
                Err(why) => Parsed::Malformed(why),
            },
        }
    }

    #[test]
    fn splits_lines_across_reads() {
        let mut lb = LineBuf::new(100);
        feed(&mut lb, b"/a {}\n/b");
        assert_eq!(lb.next_line(), Next::Line(b"/a {}"));
        assert_eq!(lb.next_line(), Next::Incomplete);
        feed(&mut lb, b" {\"x\":1}\r\n\n");
        assert_eq!(lb.next_line(), Next::Line(b"/b {\"x\":1}\r"));
        assert_eq!(lb.next_line(), Next::Line(b""));
        assert_eq!(lb.next_line(), Next::Incomplete);
        assert!(lb.is_empty());
        assert_eq!(lb.capacity(), 0, "buffer released when nothing is partial");
    }

    #[test]
    fn over_long_lines() {
        let mut lb = LineBuf::new(10);
        feed(&mut lb, b"0123456789\n");
        assert_eq!(lb.next_line(), Next::Line(b"0123456789"));
        feed(&mut lb, b"0123456789A\n");
        assert_eq!(lb.next_line(), Next::TooLong);
        let mut lb = LineBuf::new(10);
        feed(&mut lb, b"0123456789");
        assert_eq!(lb.next_line(), Next::Incomplete);
        feed(&mut lb, b"A");
        assert_eq!(lb.next_line(), Next::TooLong);
    }

    #[test]
    fn parses_requests() {
        assert_eq!(
            parse_line(b"/verify_access_token {\"access_token\":\"t\"}\r"),
            Parsed::Request {
                path: "/verify_access_token".into(),
                body: json!({"access_token": "t"})
            }
        );
        assert_eq!(
            parse_line(b"  /p\t {\"a\": [1, 2]} "),
            Parsed::Request {
                path: "/p".into(),
                body: json!({"a": [1, 2]})
            }
        );
        assert_eq!(
            parse_line(b"/only_path"),
            Parsed::Request {
                path: "/only_path".into(),
                body: json!({})
            }
        );
        assert_eq!(parse_line(b""), Parsed::Empty);
        assert_eq!(parse_line(b" \t\r"), Parsed::Empty);
    }

    #[test]
    fn rejects_malformed_lines() {
        assert_eq!(parse_line(b"/p {\"a\":"), Parsed::Malformed("bad JSON"));
        assert_eq!(parse_line(b"/p {} {}"), Parsed::Malformed("bad JSON"));
        assert_eq!(
            parse_line(b"/p [1]"),
            Parsed::Malformed("JSON not an object")
        );
        assert_eq!(
            parse_line(b"/p \"s\""),
            Parsed::Malformed("JSON not an object")
        );
        assert_eq!(parse_line(b"{\"a\":1}"), Parsed::Malformed("no path"));
        assert_eq!(parse_line(b"p {}"), Parsed::Malformed("no path"));
        assert_eq!(
            parse_line(b"/p {\"a\":\"\xff\"}"),
            Parsed::Malformed("not UTF-8")
        );
        assert_eq!(parse_line(b"\x00\x01\xfe"), Parsed::Malformed("not UTF-8"));
        let deep = format!("/p {{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(parse_line(deep.as_bytes()), Parsed::Malformed("bad JSON"));
    }
}
