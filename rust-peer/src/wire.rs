//! Wire format of protocol v1 (compatible with the original tool).
//!
//! Handshake: the dialer sends its id as a 4-byte big-endian unsigned int.
//! Frame: a 4-byte big-endian length L, then L bytes of compact JSON
//! `{"id":<author>,"hops":[<h1>,...,<hk>]}`.

use std::fmt;
use std::io::{self, Read};

/// Frames longer than this are a protocol error (a v1 frame of 200 peers is < 2 KiB).
pub const MAX_FRAME: u32 = 1 << 20;
/// Nesting deeper than this in a payload is refused (the parser is recursive).
const MAX_DEPTH: usize = 32;

/// A protocol error on one connection; `reason` is a short stable code.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub reason: &'static str,
    pub detail: String,
}

impl WireError {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        WireError { reason, detail: detail.into() }
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// A v1 message: its author and the hop list (author first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub author: u32,
    pub hops: Vec<u32>,
}

/// Compact JSON with keys in the original order and no spaces.
pub fn encode_payload(author: u32, hops: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + hops.len() * 4);
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(author.to_string().as_bytes());
    out.extend_from_slice(b",\"hops\":[");
    for (i, h) in hops.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(h.to_string().as_bytes());
    }
    out.extend_from_slice(b"]}");
    out
}

/// Length prefix + payload.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn encode_handshake(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

/// Result of reading one frame from a stream.
#[derive(Debug)]
pub enum ReadFrame {
    Frame(Vec<u8>),
    /// Clean end of stream between frames.
    Eof,
}

/// Error of `read_frame`: transport failure or a protocol violation.
#[derive(Debug)]
pub enum ReadError {
    Io(#[allow(dead_code)] io::Error),
    Protocol(WireError),
}

/// Read one frame (blocking). EOF inside a frame is the protocol error `truncated`.
pub fn read_frame<R: Read>(r: &mut R) -> Result<ReadFrame, ReadError> {
    let mut header = [0u8; 4];
    match read_full(r, &mut header).map_err(ReadError::Io)? {
        0 => return Ok(ReadFrame::Eof),
        4 => {}
        got => {
            return Err(ReadError::Protocol(WireError::new("truncated", format!("EOF after {got} of 4 length bytes"))))
        }
    }
    let len = u32::from_be_bytes(header);
    if len > MAX_FRAME {
        return Err(ReadError::Protocol(WireError::new(
            "oversize",
            format!("frame of {len} bytes exceeds {MAX_FRAME}"),
        )));
    }
    let mut payload = vec![0u8; len as usize];
    let got = read_full(r, &mut payload).map_err(ReadError::Io)?;
    if got < payload.len() {
        return Err(ReadError::Protocol(WireError::new(
            "truncated",
            format!("EOF after {got} of {len} payload bytes"),
        )));
    }
    Ok(ReadFrame::Frame(payload))
}

/// Fill `buf` unless EOF comes first; returns the bytes read.
pub fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Validate a payload: an object with exactly the keys `id` and `hops`, non-negative
/// integer ids (fitting 32 bits), a non-empty hop list without repeats whose first
/// entry is the author. Any valid JSON spelling is accepted (forwards are re-encoded).
pub fn parse_payload(payload: &[u8]) -> Result<Message, WireError> {
    if let Some(m) = parse_canonical(payload) {
        return check(m);
    }
    let text = std::str::from_utf8(payload).map_err(|e| WireError::new("bad_utf8", e.to_string()))?;
    let mut p = Parser { s: text.as_bytes(), pos: 0 };
    let value = p.document()?;
    let Value::Object(fields) = value else {
        return Err(WireError::new("bad_type", "message must be a JSON object"));
    };
    let mut author = None;
    let mut hops = None;
    for (k, v) in fields {
        let slot_taken = match k.as_str() {
            "id" => author.replace(as_id(&v, "id")?).is_some(),
            "hops" => hops.replace(as_hops(&v)?).is_some(),
            _ => return Err(WireError::new("bad_type", format!("unexpected key {k:?}"))),
        };
        if slot_taken {
            return Err(WireError::new("bad_type", format!("key {k:?} repeated")));
        }
    }
    let author = author.ok_or_else(|| WireError::new("bad_type", "missing key \"id\""))?;
    let hops = hops.ok_or_else(|| WireError::new("bad_type", "missing key \"hops\""))?;
    check(Message { author, hops })
}

/// Whether `payload` is byte for byte the compact encoding of its message.
pub fn is_canonical(payload: &[u8], m: &Message) -> bool {
    encode_payload(m.author, &m.hops) == payload
}

fn check(m: Message) -> Result<Message, WireError> {
    if m.hops.is_empty() {
        return Err(WireError::new("bad_hops", "hops must be a non-empty list"));
    }
    if m.hops[0] != m.author {
        return Err(WireError::new("bad_hops", format!("first hop {} is not the author {}", m.hops[0], m.author)));
    }
    let mut sorted = m.hops.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(WireError::new("bad_hops", format!("hop list repeats a peer: {:?}", m.hops)));
    }
    Ok(m)
}

/// Fast path for the compact form every conforming peer sends.
fn parse_canonical(p: &[u8]) -> Option<Message> {
    let rest = p.strip_prefix(b"{\"id\":")?;
    let (author, rest) = canonical_uint(rest)?;
    let mut rest = rest.strip_prefix(b",\"hops\":[")?;
    let mut hops = Vec::new();
    loop {
        let (h, r) = canonical_uint(rest)?;
        hops.push(h);
        match r.split_first()? {
            (b',', r) => rest = r,
            (b']', r) if r == b"}" => return Some(Message { author, hops }),
            _ => return None,
        }
    }
}

fn canonical_uint(p: &[u8]) -> Option<(u32, &[u8])> {
    let n = p.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 10 || (n > 1 && p[0] == b'0') {
        return None;
    }
    let v: u64 = std::str::from_utf8(&p[..n]).ok()?.parse().ok()?;
    Some((u32::try_from(v).ok()?, &p[n..]))
}

fn as_id(v: &Value, what: &str) -> Result<u32, WireError> {
    let reason = if what == "id" { "bad_id" } else { "bad_hops" };
    match v {
        Value::Number(s) => {
            let digits = s.bytes().all(|b| b.is_ascii_digit());
            if !digits {
                return Err(WireError::new(reason, format!("{what} must be a non-negative integer, got {s}")));
            }
            s.parse::<u32>().map_err(|_| WireError::new(reason, format!("{what} {s} does not fit 32 bits")))
        }
        _ => Err(WireError::new(reason, format!("{what} must be a non-negative integer"))),
    }
}

fn as_hops(v: &Value) -> Result<Vec<u32>, WireError> {
    match v {
        Value::Array(items) => items.iter().map(|x| as_id(x, "hop")).collect(),
        _ => Err(WireError::new("bad_hops", "hops must be a list")),
    }
}

/// Just enough JSON to validate any spelling of a message (numbers kept as text).
#[derive(Debug)]
enum Value {
    Null,
    Bool,
    Number(String),
    Str,
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> WireError {
        WireError::new("bad_json", format!("{what} at byte {}", self.pos))
    }

    fn document(&mut self) -> Result<Value, WireError> {
        let v = self.value(0)?;
        self.ws();
        if self.pos != self.s.len() {
            return Err(self.err("trailing data"));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.pos..].starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, WireError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.ws();
        match self.s.get(self.pos) {
            None => Err(self.err("unexpected end")),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(|_| Value::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat(b"true") || self.eat(b"false") => Ok(Value::Bool),
            _ if self.eat(b"null") => Ok(Value::Null),
            _ => Err(self.err("unexpected character")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, WireError> {
        self.pos += 1;
        let mut fields = Vec::new();
        self.ws();
        if self.eat(b"}") {
            return Ok(Value::Object(fields));
        }
        loop {
            self.ws();
            if self.s.get(self.pos) != Some(&b'"') {
                return Err(self.err("expected a key"));
            }
            let key = self.string()?;
            self.ws();
            if !self.eat(b":") {
                return Err(self.err("expected ':'"));
            }
            fields.push((key, self.value(depth + 1)?));
            self.ws();
            if self.eat(b"}") {
                return Ok(Value::Object(fields));
            }
            if !self.eat(b",") {
                return Err(self.err("expected ',' or '}'"));
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, WireError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.eat(b"]") {
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.ws();
            if self.eat(b"]") {
                return Ok(Value::Array(items));
            }
            if !self.eat(b",") {
                return Err(self.err("expected ',' or ']'"));
            }
        }
    }

    fn string(&mut self) -> Result<String, WireError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let Some(&b) = self.s.get(self.pos) else { return Err(self.err("unterminated string")) };
            self.pos += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => out.push(self.escape()?),
                0..=0x1f => return Err(self.err("control character in string")),
                _ => {
                    // Input is valid UTF-8: copy the whole character.
                    let start = self.pos - 1;
                    let len = utf8_len(b);
                    self.pos = start + len;
                    out.push_str(std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("bad UTF-8"))?);
                }
            }
        }
    }

    fn escape(&mut self) -> Result<char, WireError> {
        let Some(&c) = self.s.get(self.pos) else { return Err(self.err("unterminated escape")) };
        self.pos += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                if (0xD800..0xDC00).contains(&hi) && self.eat(b"\\u") {
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return Err(self.err("bad surrogate pair"));
                    }
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                        .ok_or_else(|| self.err("bad escape"))?
                } else {
                    // A lone surrogate is valid JSON but no character: it can only be an unknown key.
                    char::from_u32(hi).unwrap_or('\u{FFFD}')
                }
            }
            _ => return Err(self.err("bad escape")),
        })
    }

    fn hex4(&mut self) -> Result<u32, WireError> {
        let digits = self.s.get(self.pos..self.pos + 4).ok_or_else(|| self.err("short \\u escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn number(&mut self) -> Result<Value, WireError> {
        let start = self.pos;
        self.eat(b"-");
        let int_start = self.pos;
        let int_len = self.digits();
        if int_len == 0 || (int_len > 1 && self.s[int_start] == b'0') {
            return Err(self.err("bad number"));
        }
        if self.eat(b".") && self.digits() == 0 {
            return Err(self.err("bad fraction"));
        }
        if matches!(self.s.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.s.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("bad exponent"));
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("bad number"))?;
        Ok(Value::Number(text.to_string()))
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.s.get(self.pos), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn msg(author: u32, hops: &[u32]) -> Message {
        Message { author, hops: hops.to_vec() }
    }

    #[test]
    fn frame_sizes_match_the_design() {
        // Single-digit ids: 23/25/27/29 bytes for 1/2/3/4 hops.
        for (hops, size) in [(&[1][..], 23), (&[1, 0][..], 25), (&[1, 0, 4][..], 27), (&[1, 0, 4, 3][..], 29)] {
            assert_eq!(encode_frame(&encode_payload(1, hops)).len(), size);
        }
        assert_eq!(encode_payload(1, &[1, 0, 4, 3]), br#"{"id":1,"hops":[1,0,4,3]}"#.to_vec());
        assert_eq!(encode_payload(12, &[12, 3]), br#"{"id":12,"hops":[12,3]}"#.to_vec());
    }

    #[test]
    fn frame_round_trip_and_eof() {
        let mut wire = encode_frame(b"{\"id\":0,\"hops\":[0]}");
        wire.extend(encode_frame(b"{\"id\":1,\"hops\":[1,0]}"));
        let mut r = Cursor::new(wire);
        for want in [&b"{\"id\":0,\"hops\":[0]}"[..], b"{\"id\":1,\"hops\":[1,0]}"] {
            match read_frame(&mut r) {
                Ok(ReadFrame::Frame(p)) => assert_eq!(p, want),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(read_frame(&mut r), Ok(ReadFrame::Eof)));
    }

    #[test]
    fn truncated_and_oversize_frames() {
        let reason = |bytes: Vec<u8>| match read_frame(&mut Cursor::new(bytes)) {
            Err(ReadError::Protocol(e)) => e.reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(vec![0, 0]), "truncated");
        assert_eq!(reason(vec![0, 0, 0, 5, b'{']), "truncated");
        assert_eq!(reason((MAX_FRAME + 1).to_be_bytes().to_vec()), "oversize");
    }

    #[test]
    fn handshake_is_big_endian() {
        assert_eq!(encode_handshake(258), [0, 0, 1, 2]);
    }

    #[test]
    fn parses_canonical_and_other_spellings() {
        assert_eq!(parse_payload(br#"{"id":1,"hops":[1,0,4,3]}"#), Ok(msg(1, &[1, 0, 4, 3])));
        let spaced = br#" { "hops" : [ 7 , 2 ] , "id" : 7 } "#;
        let m = parse_payload(spaced).unwrap();
        assert_eq!(m, msg(7, &[7, 2]));
        assert!(!is_canonical(spaced, &m));
        assert!(is_canonical(br#"{"id":7,"hops":[7,2]}"#, &m));
        assert_eq!(parse_payload(br#"{"\u0069d":4294967295,"hops":[4294967295]}"#), Ok(msg(u32::MAX, &[u32::MAX])));
    }

    #[test]
    fn rejects_invalid_messages() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "bad_json"),
            (b"{", "bad_json"),
            (b"{\"id\":1,\"hops\":[1]}x", "bad_json"),
            (b"{\"id\":01,\"hops\":[1]}", "bad_json"),
            (b"\xff\xfe", "bad_utf8"),
            (b"[1]", "bad_type"),
            (b"{\"id\":1}", "bad_type"),
            (b"{\"id\":1,\"hops\":[1],\"x\":0}", "bad_type"),
            (b"{\"id\":1,\"id\":1,\"hops\":[1]}", "bad_type"),
            (b"{\"id\":-1,\"hops\":[-1]}", "bad_id"),
            (b"{\"id\":1.0,\"hops\":[1]}", "bad_id"),
            (b"{\"id\":true,\"hops\":[1]}", "bad_id"),
            (b"{\"id\":\"1\",\"hops\":[1]}", "bad_id"),
            (b"{\"id\":4294967296,\"hops\":[1]}", "bad_id"),
            (b"{\"id\":1,\"hops\":[]}", "bad_hops"),
            (b"{\"id\":1,\"hops\":1}", "bad_hops"),
            (b"{\"id\":1,\"hops\":[2,1]}", "bad_hops"),
            (b"{\"id\":1,\"hops\":[1,2,1]}", "bad_hops"),
            (b"{\"id\":1,\"hops\":[1,null]}", "bad_hops"),
        ];
        for (payload, reason) in cases {
            let got = parse_payload(payload).expect_err(&String::from_utf8_lossy(payload));
            assert_eq!(got.reason, *reason, "{}: {got}", String::from_utf8_lossy(payload));
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_payload(deep.as_bytes()).unwrap_err().reason, "bad_json");
    }
}
