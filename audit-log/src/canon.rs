//! Canonical JSON (RFC 8785, "JCS") writer and a strict canonical-form scanner.
//!
//! The writer produces the bytes that are hashed. The scanner checks, in one pass and
//! without building a tree, that a stored line is *exactly* the canonical form of the
//! object it encodes (so any byte change either changes the decoded value, and with it
//! the hash, or makes the line non-canonical) and returns the byte spans of its
//! top-level members.
//!
//! One deliberate difference from RFC 8785: integers that fit `i64`/`u64` are written
//! with all their digits (RFC 8785 first converts every number to an IEEE double, which
//! would let an edit of a large integer go unnoticed). For integers of magnitude below
//! 2^53 — every number this crate writes itself — both rules give the same bytes.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Range;

use serde_json::Value;

/// Maximum nesting depth accepted by the scanner (the writer never produces deeper
/// values from records this crate accepts; see [`check_depth`]).
pub(crate) const MAX_DEPTH: usize = 128;

// ---------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------

/// Appends the canonical form of `value` to `out`.
pub(crate) fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| key_cmp(a.0, b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out);
                out.push(b':');
                write_value(v, out);
            }
            out.push(b'}');
        }
    }
}

/// Depth of a JSON value (scalars are depth 0).
pub(crate) fn check_depth(value: &Value, limit: usize) -> bool {
    fn depth_ok(value: &Value, remaining: usize) -> bool {
        match value {
            Value::Array(items) => {
                remaining > 0 && items.iter().all(|v| depth_ok(v, remaining - 1))
            }
            Value::Object(map) => remaining > 0 && map.values().all(|v| depth_ok(v, remaining - 1)),
            _ => true,
        }
    }
    depth_ok(value, limit)
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        out.extend_from_slice(es_number(f).as_bytes());
    } else {
        // serde_json numbers are always one of the three; arbitrary_precision numbers
        // that are none of them keep their own text.
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

/// Appends the canonical (RFC 8785) form of a string, quotes included.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x09 => Some(b"\\t"),
            0x0a => Some(b"\\n"),
            0x0c => Some(b"\\f"),
            0x0d => Some(b"\\r"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// [`key_cmp`] on UTF-8 bytes without decoding: byte order equals UTF-16 order unless
/// the first differing bytes involve a lead byte of U+E000..U+FFFF (0xEE, 0xEF) or of a
/// supplementary character (0xF0..).
fn raw_key_cmp(a: &[u8], b: &[u8]) -> Ordering {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        None => a.len().cmp(&b.len()),
        Some(i) if a[i] < 0xEE && b[i] < 0xEE => a[i].cmp(&b[i]),
        Some(_) => match (std::str::from_utf8(a), std::str::from_utf8(b)) {
            (Ok(x), Ok(y)) => key_cmp(x, y),
            _ => a.cmp(b),
        },
    }
}

/// Orders object keys as RFC 8785 does: by their UTF-16 code units.
pub(crate) fn key_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Formats a finite double as ECMAScript `Number.prototype.toString` does (RFC 8785 §3.2.2.3).
pub(crate) fn es_number(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        // Non-finite values cannot occur in JSON; 0 and -0 both print "0".
        return "0".to_owned();
    }
    let mut s = String::new();
    if f < 0.0 {
        s.push('-');
    }
    // Rust's `{:e}` prints the shortest digits that round-trip: "d.ddde±x".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let mut digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let exp: i64 = exp.parse().unwrap_or(0);
    break_tie_to_even(f.abs(), &mut digits, exp);
    let k = digits.len() as i64;
    let n = exp + 1;
    if k <= n && n <= 21 {
        s.push_str(&digits);
        for _ in 0..(n - k) {
            s.push('0');
        }
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        s.push_str(int);
        s.push('.');
        s.push_str(frac);
    } else if -6 < n && n <= 0 {
        s.push_str("0.");
        for _ in 0..(-n) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let e = n - 1;
        let (first, rest) = digits.split_at(1);
        s.push_str(first);
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('e');
        s.push(if e < 0 { '-' } else { '+' });
        s.push_str(&e.abs().to_string());
    }
    s
}

/// When the exact value of `f` lies exactly halfway between two shortest candidates,
/// ECMAScript picks the one with the even last digit; Rust's shortest formatting may
/// pick the other. Fixes `digits` (the shortest digits with decimal exponent `exp`).
fn break_tie_to_even(f: f64, digits: &mut String, exp: i64) {
    let k = digits.len();
    let Some(last) = digits.as_bytes().last().copied() else {
        return;
    };
    // Exact decimal expansion (every double has at most 767 significant digits).
    let exact = format!("{:.800e}", f);
    let (m, e) = exact.split_once('e').unwrap_or((exact.as_str(), "0"));
    if e.parse::<i64>().ok() != Some(exp) {
        return;
    }
    let exact_digits: String = m.chars().filter(|c| *c != '.').collect();
    let exact_digits = exact_digits.trim_end_matches('0');
    // A tie: the exact value has exactly k+1 significant digits ending in 5.
    if exact_digits.len() != k + 1 || !exact_digits.ends_with('5') {
        return;
    }
    let trunc = &exact_digits[..k];
    let candidate = if trunc == digits.as_str() {
        // Rust rounded down; rounding up is only an option without a carry.
        if last == b'9' || (last - b'0').is_multiple_of(2) {
            return;
        }
        let mut up = trunc.as_bytes().to_vec();
        if let Some(l) = up.last_mut() {
            *l += 1;
        }
        String::from_utf8(up).unwrap_or_default()
    } else {
        // Rust rounded up; rounding down keeps the digit count.
        let t_last = trunc.as_bytes().last().copied().unwrap_or(b'1');
        if !(t_last - b'0').is_multiple_of(2) {
            return;
        }
        trunc.to_owned()
    };
    // Only switch when the candidate reads back as the same double.
    let text = format!("{}.{}e{}", &candidate[..1], &candidate[1..], exp);
    if text.parse::<f64>().ok() == Some(f) {
        *digits = candidate;
    }
}

// ---------------------------------------------------------------------------------------
// Scanner
// ---------------------------------------------------------------------------------------

/// One top-level member of a scanned object (byte ranges into the line).
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// The key's content (between the quotes).
    key: Range<usize>,
    /// Whether the key contains escapes.
    key_escaped: bool,
    /// Byte offset of the key's opening quote.
    pub(crate) start: usize,
    /// Byte range of the value.
    pub(crate) value: Range<usize>,
}

impl Member {
    /// The decoded key.
    pub(crate) fn key<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let raw = text.get(self.key.clone()).unwrap_or_default();
        if self.key_escaped {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        }
    }
}

/// Why a line is not canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanError {
    /// Byte offset within the line.
    pub(crate) at: usize,
    /// What is wrong.
    pub(crate) message: &'static str,
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {} of the line", self.message, self.at)
    }
}

type ScanResult<T> = Result<T, ScanError>;

/// Checks that `line` is exactly the canonical form of one JSON object and returns
/// its top-level members (in order). `line` must not contain the newline.
pub(crate) fn scan_object<'a>(line: &'a [u8], members: &mut Vec<Member>) -> ScanResult<&'a str> {
    members.clear();
    let text = std::str::from_utf8(line).map_err(|e| ScanError {
        at: e.valid_up_to(),
        message: "invalid UTF-8",
    })?;
    let mut sc = Scanner {
        text,
        b: text.as_bytes(),
        pos: 0,
    };
    sc.object(0, Some(members))?;
    if sc.pos != sc.b.len() {
        return Err(sc.err("trailing bytes after the object"));
    }
    Ok(text)
}

/// Bytes that end the fast path inside a string: controls, '"' and '\\'.
static SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
}

/// A scanned string token.
struct StrTok {
    /// Content between the quotes.
    raw: Range<usize>,
    escaped: bool,
}

impl<'a> Scanner<'a> {
    fn err(&self, message: &'static str) -> ScanError {
        ScanError {
            at: self.pos,
            message,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8, message: &'static str) -> ScanResult<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(message))
        }
    }

    fn value(&mut self, depth: usize) -> ScanResult<()> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, None),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a JSON value (no whitespace allowed)")),
            None => Err(self.err("unexpected end of line")),
        }
    }

    fn literal(&mut self, lit: &'static [u8]) -> ScanResult<()> {
        if self.b.get(self.pos..self.pos + lit.len()) == Some(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn array(&mut self, depth: usize) -> ScanResult<()> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize, mut top: Option<&mut Vec<Member>>) -> ScanResult<()> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        self.expect(b'{', "expected '{'")?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        let mut prev_key: Option<StrTok> = None;
        loop {
            let start = self.pos;
            if self.peek() != Some(b'"') {
                return Err(self.err("expected an object key"));
            }
            let tok = self.string()?;
            if let Some(prev) = &prev_key
                && self.tok_cmp(prev, &tok) != Ordering::Less
            {
                return Err(ScanError {
                    at: start,
                    message: "object keys not in canonical order (or duplicated)",
                });
            }
            self.expect(b':', "expected ':'")?;
            let vstart = self.pos;
            self.value(depth)?;
            if let Some(members) = top.as_deref_mut() {
                members.push(Member {
                    key: tok.raw.clone(),
                    key_escaped: tok.escaped,
                    start,
                    value: vstart..self.pos,
                });
            }
            prev_key = Some(tok);
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    /// RFC 8785 order of two keys.
    fn tok_cmp(&self, a: &StrTok, b: &StrTok) -> Ordering {
        if !a.escaped && !b.escaped {
            raw_key_cmp(&self.b[a.raw.clone()], &self.b[b.raw.clone()])
        } else {
            key_cmp(&self.decode(a), &self.decode(b))
        }
    }

    fn decode(&self, tok: &StrTok) -> Cow<'a, str> {
        // String bodies start and end next to ASCII quotes: always char boundaries.
        let raw = self.text.get(tok.raw.clone()).unwrap_or_default();
        if tok.escaped {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        }
    }

    fn string(&mut self) -> ScanResult<StrTok> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let mut escaped = false;
        loop {
            // Fast skip over ordinary bytes (everything but '"', '\\' and controls).
            if let Some(rest) = self.b.get(self.pos..) {
                self.pos += rest
                    .iter()
                    .position(|&c| SPECIAL[usize::from(c)])
                    .unwrap_or(rest.len());
            }
            let Some(&c) = self.b.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => {
                    let raw = start..self.pos;
                    self.pos += 1;
                    return Ok(StrTok { raw, escaped });
                }
                b'\\' => {
                    escaped = true;
                    let Some(&e) = self.b.get(self.pos + 1) else {
                        return Err(self.err("unterminated escape"));
                    };
                    match e {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
                        b'u' => {
                            let hex = self
                                .b
                                .get(self.pos + 2..self.pos + 6)
                                .ok_or_else(|| self.err("short \\u escape"))?;
                            // Canonical \u escapes are exactly \u00XX (lowercase hex) for
                            // control characters without a short form.
                            let ok = hex[0] == b'0'
                                && hex[1] == b'0'
                                && matches!(hex[2], b'0' | b'1')
                                && matches!(hex[3], b'0'..=b'9' | b'a'..=b'f');
                            let v = if ok {
                                (hex[2] - b'0') * 16
                                    + match hex[3] {
                                        d @ b'0'..=b'9' => d - b'0',
                                        d => d - b'a' + 10,
                                    }
                            } else {
                                0x08
                            };
                            if !ok || matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return Err(self.err("non-canonical \\u escape"));
                            }
                            self.pos += 6;
                        }
                        _ => return Err(self.err("non-canonical escape")),
                    }
                }
                0x00..=0x1f => return Err(self.err("unescaped control character in string")),
                _ => self.pos += 1,
            }
        }
    }

    fn number(&mut self) -> ScanResult<()> {
        let start = self.pos;
        let b = self.b;
        let mut i = self.pos;
        let digits = |i: &mut usize| {
            let s = *i;
            while matches!(b.get(*i), Some(b'0'..=b'9')) {
                *i += 1;
            }
            *i - s
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        let n = digits(&mut i);
        if n == 0 || (n > 1 && b.get(int_start) == Some(&b'0')) {
            self.pos = i;
            return Err(self.err("invalid number"));
        }
        let mut plain_int = true;
        if b.get(i) == Some(&b'.') {
            plain_int = false;
            i += 1;
            if digits(&mut i) == 0 {
                self.pos = i;
                return Err(self.err("invalid number"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            plain_int = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if digits(&mut i) == 0 {
                self.pos = i;
                return Err(self.err("invalid number"));
            }
        }
        self.pos = i;
        let tok = self.text.get(start..i).unwrap_or_default();
        if plain_int {
            if tok == "-0" {
                return Err(ScanError {
                    at: start,
                    message: "non-canonical number (-0)",
                });
            }
            if tok.parse::<u64>().is_ok() || tok.parse::<i64>().is_ok() {
                return Ok(());
            }
        }
        match tok.parse::<f64>() {
            Ok(f) if f.is_finite() && es_number(f) == tok => Ok(()),
            _ => Err(ScanError {
                at: start,
                message: "non-canonical number",
            }),
        }
    }
}

/// Decodes the escapes of a canonical string body.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Decodes a string value span (quotes included) of a scanned line.
pub(crate) fn string_value<'a>(text: &'a str, span: &Range<usize>) -> Option<Cow<'a, str>> {
    let inner = text
        .get(span.clone())?
        .strip_prefix('"')?
        .strip_suffix('"')?;
    if inner.contains('\\') {
        Some(Cow::Owned(unescape(inner)))
    } else {
        Some(Cow::Borrowed(inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        let mut out = Vec::new();
        write_value(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc8785_number_vectors() {
        // From RFC 8785 Appendix B (IEEE 754 -> ES6 string).
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in cases {
            assert_eq!(es_number(f64::from_bits(*bits)), *want, "bits {bits:#x}");
        }
    }

    #[test]
    fn rfc8785_example_object() {
        let v: Value = serde_json::from_str(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],
                "string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals":[null,true,false]}"#,
        )
        .unwrap();
        assert_eq!(
            canon(&v),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn utf16_key_order() {
        // U+FB01 has a lower code point than U+1F600 but a higher first UTF-16 code unit
        // (0xFB01 > 0xD83D), so RFC 8785 puts it last.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2, "a": 3, "\u{20ac}": 4});
        assert_eq!(
            canon(&v),
            "{\"a\":3,\"\u{20ac}\":4,\"\u{1f600}\":2,\"\u{fb01}\":1}"
        );
        let text = canon(&v);
        let mut m = Vec::new();
        scan_object(text.as_bytes(), &mut m).unwrap();
        let mut m = Vec::new();
        assert!(
            scan_object(
                "{\"a\":3,\"\u{fb01}\":1,\"\u{1f600}\":2}".as_bytes(),
                &mut m
            )
            .is_err()
        );
    }

    #[test]
    fn scanner_rejects_non_canonical_forms() {
        let mut m = Vec::new();
        for bad in [
            r#"{"a":1.0}"#,
            r#"{"a":1E+30}"#,
            r#"{"a":1e30}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a": 1}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u000A"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u001F"}"#,
            "{\"a\":\"\t\"}",
            r#"{"a":1}x"#,
            r#"{"a":1"#,
            r#"{"a":tru}"#,
            r#"[1]"#,
        ] {
            assert!(
                scan_object(bad.as_bytes(), &mut m).is_err(),
                "accepted {bad}"
            );
        }
        for good in [
            r#"{}"#,
            r#"{"a":1e+30,"b":-1.5,"c":0.001,"d":"\u001f\n","e":[{},[]],"f":null}"#,
            r#"{"a":18446744073709551615,"b":-9223372036854775808}"#,
        ] {
            scan_object(good.as_bytes(), &mut m).unwrap();
        }
    }

    #[test]
    fn scanner_reports_top_level_spans() {
        let line = br#"{"a":{"x":[1,2]},"b":"q\"r","c":3,"d\nk":0}"#;
        let mut m = Vec::new();
        let text = scan_object(line, &mut m).unwrap();
        let keys: Vec<String> = m.iter().map(|m| m.key(text).into_owned()).collect();
        assert_eq!(keys, ["a", "b", "c", "d\nk"]);
        assert_eq!(&line[m[0].value.clone()], br#"{"x":[1,2]}"#);
        assert_eq!(string_value(text, &m[1].value).unwrap(), "q\"r");
        assert_eq!(&line[m[2].value.clone()], b"3");
    }

    #[test]
    fn depth_limits() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200), "]".repeat(200));
        let mut m = Vec::new();
        assert!(scan_object(deep.as_bytes(), &mut m).is_err());
        let v: Value =
            serde_json::from_str(&format!("{}1{}", "[".repeat(100), "]".repeat(100))).unwrap();
        assert!(check_depth(&v, 100));
        assert!(!check_depth(&v, 99));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "\\PC*".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_output_scans_and_round_trips(v in arb_json()) {
            let obj = json!({"v": v});
            let text = canon(&obj);
            let mut m = Vec::new();
            scan_object(text.as_bytes(), &mut m).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            // Re-canonicalizing the parsed value gives the same bytes (idempotent).
            prop_assert_eq!(canon(&back), text);
        }

        #[test]
        fn raw_key_order_equals_utf16_order(a in any::<String>(), b in any::<String>()) {
            prop_assert_eq!(raw_key_cmp(a.as_bytes(), b.as_bytes()), key_cmp(&a, &b));
            let pre = format!("{a}{b}");
            prop_assert_eq!(raw_key_cmp(a.as_bytes(), pre.as_bytes()), key_cmp(&a, &pre));
        }

        #[test]
        fn es_number_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let s = es_number(f);
            let back: f64 = s.parse().unwrap();
            prop_assert!(back == f || (f == 0.0 && back == 0.0));
        }
    }
}
