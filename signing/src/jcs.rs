//! RFC 8785 JSON Canonicalization Scheme (JCS) over [`serde_json::Value`].
//!
//! The canonical form of a JSON value is the one RFC 8785 defines:
//!
//! * no insignificant whitespace;
//! * object members sorted by their names compared as arrays of **UTF-16 code units**
//!   (RFC 8785 §3.2.3: `"\u{E000}"` sorts *after* `"\u{1F600}"` because the emoji's first
//!   code unit is the surrogate `0xD83D`);
//! * strings escaped exactly as ECMAScript's `JSON.stringify` does: `\"`, `\\`, the five
//!   short escapes `\b \f \n \r \t`, every other control character below U+0020 as
//!   `\u00xx` (lower-case hex), and everything else (including `/`, U+007F and
//!   U+2028/U+2029) written literally in UTF-8;
//! * numbers written as ECMAScript's `Number::toString` writes the IEEE 754 double
//!   (RFC 8785 §3.2.2.3): shortest round-tripping digits, `1e+21` from 10²¹ up,
//!   `1e-7` below 10⁻⁶, `-0` as `0`.
//!
//! # Integers beyond 2^53
//!
//! JCS (like JavaScript) sees every number as a double, so the integers 2^53 and 2^53 + 1
//! have the same canonical form. [`Canonicalizer::rfc8785`] follows the RFC to the letter
//! and rounds such integers to the nearest double, exactly as `JSON.parse` does.
//! [`Canonicalizer::strict`] — the one envelopes use — **rejects** any number whose
//! magnitude exceeds `2^53 - 1` (I-JSON's interoperable range, RFC 7493 §2.2) with
//! [`JcsError::UnsafeNumber`]: a signed `replicas: 9007199254740993` would otherwise be
//! executed as a different number by a JavaScript peer. They are not carried as strings:
//! a caller who needs 64-bit identifiers puts them in a JSON string themselves.
//!
//! # Bounded recursion
//!
//! Nesting deeper than the canonicaliser's depth limit ends in [`JcsError::TooDeep`],
//! never in a stack overflow.
//!
//! ```
//! use kubesafe_signing::jcs::Canonicalizer;
//! let value: serde_json::Value =
//!     serde_json::from_str(r#"{ "b": [1.50, "\u00e9"], "a": 1E3 }"#).unwrap();
//! let bytes = Canonicalizer::strict().to_vec(&value).unwrap();
//! assert_eq!(bytes, "{\"a\":1000,\"b\":[1.5,\"é\"]}".as_bytes());
//! ```

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

/// The largest integer magnitude [`Canonicalizer::strict`] accepts: `2^53 - 1`
/// (`Number.MAX_SAFE_INTEGER` in ECMAScript, the I-JSON limit of RFC 7493 §2.2).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The default nesting limit (arrays and objects) of a [`Canonicalizer`].
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JcsError {
    /// Arrays and objects are nested deeper than the limit.
    #[error("JSON nesting at {path} is deeper than the limit of {limit}")]
    TooDeep {
        /// JSON Pointer (RFC 6901) of the value where the limit was crossed.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// A number's magnitude exceeds `2^53 - 1` (strict mode only).
    #[error(
        "number {number} at {path} is outside the interoperable range ±(2^53 - 1); \
         send it as a JSON string instead"
    )]
    UnsafeNumber {
        /// JSON Pointer (RFC 6901) of the number.
        path: String,
        /// The number as it was given.
        number: String,
    },
    /// A number is not finite (NaN or infinity), which JSON cannot express.
    #[error("number at {path} is not finite")]
    NonFinite {
        /// JSON Pointer (RFC 6901) of the number.
        path: String,
    },
}

/// An error found deep in a value, with its path collected while unwinding.
#[derive(Debug)]
struct Located {
    kind: Kind,
    /// Path segments, innermost first.
    rev_path: Vec<String>,
}

#[derive(Debug)]
enum Kind {
    TooDeep(usize),
    Unsafe(String),
    NonFinite,
}

impl Located {
    fn new(kind: Kind) -> Self {
        Located {
            kind,
            rev_path: Vec::new(),
        }
    }

    fn into_error(self) -> JcsError {
        let mut path = String::new();
        for seg in self.rev_path.iter().rev() {
            path.push('/');
            // RFC 6901 escaping: `~` -> `~0`, `/` -> `~1`.
            for c in seg.chars() {
                match c {
                    '~' => path.push_str("~0"),
                    '/' => path.push_str("~1"),
                    c => path.push(c),
                }
            }
        }
        if path.is_empty() {
            path.push_str("(root)");
        }
        match self.kind {
            Kind::TooDeep(limit) => JcsError::TooDeep { path, limit },
            Kind::Unsafe(number) => JcsError::UnsafeNumber { path, number },
            Kind::NonFinite => JcsError::NonFinite { path },
        }
    }
}

/// Writes the RFC 8785 canonical form of JSON values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Canonicalizer {
    max_depth: usize,
    strict_numbers: bool,
}

impl Default for Canonicalizer {
    fn default() -> Self {
        Canonicalizer::strict()
    }
}

impl Canonicalizer {
    /// RFC 8785 exactly: every number is treated as an IEEE 754 double, so integers beyond
    /// `2^53` are rounded to the nearest double, as ECMAScript's `JSON.parse` rounds them.
    pub const fn rfc8785() -> Self {
        Canonicalizer {
            max_depth: DEFAULT_MAX_DEPTH,
            strict_numbers: false,
        }
    }

    /// RFC 8785 plus the envelope policy: numbers beyond `±(2^53 - 1)` are rejected with
    /// [`JcsError::UnsafeNumber`] instead of being rounded.
    pub const fn strict() -> Self {
        Canonicalizer {
            max_depth: DEFAULT_MAX_DEPTH,
            strict_numbers: true,
        }
    }

    /// Sets the nesting limit (the number of arrays and objects around the deepest value).
    pub const fn with_max_depth(mut self, max_depth: usize) -> Self {
        self.max_depth = max_depth;
        self
    }

    /// The nesting limit.
    pub const fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The canonical UTF-8 bytes of `value`.
    ///
    /// # Errors
    /// [`JcsError`] when the value is nested too deeply or (strict mode) holds a number
    /// beyond the safe range.
    pub fn to_vec(&self, value: &Value) -> Result<Vec<u8>, JcsError> {
        let mut out = Vec::with_capacity(128);
        self.write(value, &mut out)?;
        Ok(out)
    }

    /// The canonical form of `value` as a `String`.
    ///
    /// # Errors
    /// As [`Canonicalizer::to_vec`].
    pub fn to_string(&self, value: &Value) -> Result<String, JcsError> {
        let bytes = self.to_vec(value)?;
        // The writer emits only complete UTF-8 sequences copied from `&str`s, and ASCII.
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// Appends the canonical form of `value` to `out`. On error, `out` may hold a partial
    /// form: do not use it.
    ///
    /// # Errors
    /// As [`Canonicalizer::to_vec`].
    pub fn write(&self, value: &Value, out: &mut Vec<u8>) -> Result<(), JcsError> {
        self.write_to(value, out)
    }

    /// Streams the canonical form of `value` into any [`Sink`].
    pub(crate) fn write_to<S: Sink>(&self, value: &Value, out: &mut S) -> Result<(), JcsError> {
        self.write_value(value, out, 0).map_err(Located::into_error)
    }

    /// Checks that `value` has a canonical form (depth and number policy) without writing it.
    ///
    /// # Errors
    /// As [`Canonicalizer::to_vec`].
    pub fn check(&self, value: &Value) -> Result<(), JcsError> {
        self.check_value(value, 0).map_err(Located::into_error)
    }

    fn check_value(&self, value: &Value, depth: usize) -> Result<(), Located> {
        match value {
            Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
            Value::Number(n) => self.check_number(n),
            Value::Array(items) => {
                if depth >= self.max_depth {
                    return Err(Located::new(Kind::TooDeep(self.max_depth)));
                }
                for (i, item) in items.iter().enumerate() {
                    self.check_value(item, depth + 1).map_err(|mut e| {
                        e.rev_path.push(i.to_string());
                        e
                    })?;
                }
                Ok(())
            }
            Value::Object(map) => {
                if depth >= self.max_depth {
                    return Err(Located::new(Kind::TooDeep(self.max_depth)));
                }
                for (key, item) in map {
                    self.check_value(item, depth + 1).map_err(|mut e| {
                        e.rev_path.push(key.clone());
                        e
                    })?;
                }
                Ok(())
            }
        }
    }

    fn check_number(&self, n: &Number) -> Result<(), Located> {
        if let Some(u) = n.as_u64() {
            if self.strict_numbers && u > MAX_SAFE_INTEGER {
                return Err(Located::new(Kind::Unsafe(n.to_string())));
            }
            return Ok(());
        }
        if let Some(i) = n.as_i64() {
            if self.strict_numbers && i.unsigned_abs() > MAX_SAFE_INTEGER {
                return Err(Located::new(Kind::Unsafe(n.to_string())));
            }
            return Ok(());
        }
        match n.as_f64() {
            #[allow(clippy::cast_precision_loss)]
            Some(f) if f.is_finite() => {
                if self.strict_numbers && f.abs() > MAX_SAFE_INTEGER as f64 {
                    return Err(Located::new(Kind::Unsafe(n.to_string())));
                }
                Ok(())
            }
            _ => Err(Located::new(Kind::NonFinite)),
        }
    }

    fn write_value<S: Sink>(
        &self,
        value: &Value,
        out: &mut S,
        depth: usize,
    ) -> Result<(), Located> {
        match value {
            Value::Null => out.put(b"null"),
            Value::Bool(true) => out.put(b"true"),
            Value::Bool(false) => out.put(b"false"),
            Value::Number(n) => self.write_number(n, out)?,
            Value::String(s) => write_string(s, out),
            Value::Array(items) => {
                if depth >= self.max_depth {
                    return Err(Located::new(Kind::TooDeep(self.max_depth)));
                }
                out.put_byte(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.put_byte(b',');
                    }
                    self.write_value(item, out, depth + 1).map_err(|mut e| {
                        e.rev_path.push(i.to_string());
                        e
                    })?;
                }
                out.put_byte(b']');
            }
            Value::Object(map) => {
                if depth >= self.max_depth {
                    return Err(Located::new(Kind::TooDeep(self.max_depth)));
                }
                self.write_object(map, out, depth)?;
            }
        }
        Ok(())
    }

    fn write_object<S: Sink>(
        &self,
        map: &Map<String, Value>,
        out: &mut S,
        depth: usize,
    ) -> Result<(), Located> {
        // serde_json's default map is a BTreeMap ordered by code point, which differs from
        // UTF-16 order only for keys mixing U+E000..U+FFFF with supplementary characters;
        // with `preserve_order` it is insertion order. Check first, sort only if needed.
        let mut sorted = true;
        let mut prev: Option<&str> = None;
        for key in map.keys() {
            if let Some(p) = prev
                && utf16_cmp(p, key) != Ordering::Less
            {
                sorted = false;
                break;
            }
            prev = Some(key);
        }
        out.put_byte(b'{');
        if sorted {
            for (i, (key, value)) in map.iter().enumerate() {
                self.write_member(i, key, value, out, depth)?;
            }
        } else {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| utf16_cmp(a.0, b.0));
            for (i, (key, value)) in entries.into_iter().enumerate() {
                self.write_member(i, key, value, out, depth)?;
            }
        }
        out.put_byte(b'}');
        Ok(())
    }

    fn write_member<S: Sink>(
        &self,
        index: usize,
        key: &str,
        value: &Value,
        out: &mut S,
        depth: usize,
    ) -> Result<(), Located> {
        if index > 0 {
            out.put_byte(b',');
        }
        write_string(key, out);
        out.put_byte(b':');
        self.write_value(value, out, depth + 1).map_err(|mut e| {
            e.rev_path.push(key.to_owned());
            e
        })
    }

    fn write_number<S: Sink>(&self, n: &Number, out: &mut S) -> Result<(), Located> {
        if let Some(u) = n.as_u64() {
            if u <= MAX_SAFE_INTEGER {
                write_u64(u, out);
                return Ok(());
            }
            if self.strict_numbers {
                return Err(Located::new(Kind::Unsafe(n.to_string())));
            }
            // JSON.parse rounds to the nearest double; `as` does the same (ties to even).
            #[allow(clippy::cast_precision_loss)]
            write_f64(u as f64, out);
            return Ok(());
        }
        if let Some(i) = n.as_i64() {
            let magnitude = i.unsigned_abs();
            if magnitude <= MAX_SAFE_INTEGER {
                out.put_byte(b'-');
                write_u64(magnitude, out);
                return Ok(());
            }
            if self.strict_numbers {
                return Err(Located::new(Kind::Unsafe(n.to_string())));
            }
            #[allow(clippy::cast_precision_loss)]
            write_f64(i as f64, out);
            return Ok(());
        }
        match n.as_f64() {
            Some(f) if f.is_finite() => {
                // Every double of magnitude >= 2^53 is an integer beyond the safe range.
                #[allow(clippy::cast_precision_loss)]
                if self.strict_numbers && f.abs() > MAX_SAFE_INTEGER as f64 {
                    return Err(Located::new(Kind::Unsafe(n.to_string())));
                }
                write_f64(f, out);
                Ok(())
            }
            _ => Err(Located::new(Kind::NonFinite)),
        }
    }
}

/// Where canonical bytes go: a `Vec<u8>`, or straight into a MAC.
pub(crate) trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Appends one byte.
    fn put_byte(&mut self, byte: u8) {
        self.put(&[byte]);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    #[inline]
    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

/// Compares two strings as sequences of UTF-16 code units (RFC 8785 §3.2.3).
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let common = ab.iter().zip(bb).take_while(|(x, y)| x == y).count();
    // Equal prefixes share char boundaries; back up to the start of the differing char.
    let mut start = common;
    while start > 0 && !a.is_char_boundary(start) {
        start -= 1;
    }
    match (a.get(start..), b.get(start..)) {
        (Some(ra), Some(rb)) => {
            if ra.as_bytes().first().is_some_and(u8::is_ascii)
                && rb.as_bytes().first().is_some_and(u8::is_ascii)
            {
                // Both differ (or end) at an ASCII char: byte order is code-unit order.
                ra.as_bytes().cmp(rb.as_bytes())
            } else {
                ra.encode_utf16().cmp(rb.encode_utf16())
            }
        }
        // Unreachable (start is a char boundary of both), but never panic.
        _ => a.encode_utf16().cmp(b.encode_utf16()),
    }
}

/// Which bytes need escaping: 0 = none, otherwise the byte itself (for the short forms)
/// or `u` for `\u00xx`.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Writes `s` as a JSON string exactly as ECMAScript's `JSON.stringify` does.
pub(crate) fn write_string<S: Sink>(s: &str, out: &mut S) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_byte(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.put(bytes.get(start..i).unwrap_or_default());
        start = i + 1;
        if esc == b'u' {
            out.put(b"\\u00");
            out.put_byte(HEX[(b >> 4) as usize]);
            out.put_byte(HEX[(b & 0xf) as usize]);
        } else {
            out.put_byte(b'\\');
            out.put_byte(esc);
        }
    }
    out.put(bytes.get(start..).unwrap_or_default());
    out.put_byte(b'"');
}

pub(crate) fn write_u64<S: Sink>(mut n: u64, out: &mut S) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        // `n % 10` < 10, so the cast and the index are in range.
        #[allow(clippy::cast_possible_truncation)]
        if let Some(slot) = buf.get_mut(i) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.put(buf.get(i..).unwrap_or_default());
}

/// Writes a finite double exactly as ECMAScript's `Number::toString` (ECMA-262
/// §6.1.6.1.20, the algorithm RFC 8785 §3.2.2.3 adopts). Non-finite input writes `null`
/// (callers reject it before).
pub fn format_f64(value: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_f64(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

pub(crate) fn write_f64<S: Sink>(value: f64, out: &mut S) {
    if !value.is_finite() {
        out.put(b"null");
        return;
    }
    if value == 0.0 {
        // Both +0 and -0.
        out.put_byte(b'0');
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    if value.fract() == 0.0 && value.abs() <= MAX_SAFE_INTEGER as f64 {
        // Integers below 2^53: the shortest digits are the integer's own digits.
        if value < 0.0 {
            out.put_byte(b'-');
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        write_u64(value.abs() as u64, out);
        return;
    }
    // ryu-js implements Number::toString: the shortest digits that round-trip, the closest
    // of those, ties to even, and ECMAScript's choice between plain and exponent notation.
    let mut buf = ryu_js::Buffer::new();
    out.put(buf.format_finite(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        Canonicalizer::rfc8785().to_string(v).unwrap()
    }

    #[test]
    fn utf16_order_differs_from_code_point_order() {
        // U+FB33 (BMP, 0xFB33) vs U+1F600 (surrogates 0xD83D 0xDE00).
        assert_eq!(utf16_cmp("\u{1F600}", "\u{FB33}"), Ordering::Less);
        assert_eq!("\u{1F600}".cmp("\u{FB33}"), Ordering::Greater);
        assert_eq!(utf16_cmp("a", "ab"), Ordering::Less);
        assert_eq!(utf16_cmp("ab", "a"), Ordering::Greater);
        assert_eq!(utf16_cmp("é", "ê"), Ordering::Less);
        assert_eq!(utf16_cmp("x\u{1F600}", "x\u{E000}"), Ordering::Less);
        assert_eq!(utf16_cmp("", ""), Ordering::Equal);
    }

    #[test]
    fn unicode_is_never_normalised() {
        // RFC 8785 does not normalise, and neither does anything on the way: NFC and NFD
        // spellings are different strings with different canonical bytes (and MACs).
        let nfc = json!({"n": "Ren\u{e9}e"});
        let nfd = json!({"n": "Rene\u{301}e"});
        assert_eq!(canon(&nfc), "{\"n\":\"Ren\u{e9}e\"}");
        assert_eq!(canon(&nfd), "{\"n\":\"Rene\u{301}e\"}");
        let parsed =
            crate::json::parse("{\"n\":\"Rene\\u0301e\"}".as_bytes(), &Default::default()).unwrap();
        assert_eq!(parsed, nfd);
    }

    #[test]
    fn escapes_like_json_stringify() {
        let v = json!("\u{0}\u{1f}\u{7f}\u{8}\t\n\u{c}\r\"\\/\u{2028}é");
        assert_eq!(
            canon(&v),
            "\"\\u0000\\u001f\u{7f}\\b\\t\\n\\f\\r\\\"\\\\/\u{2028}é\""
        );
    }

    #[test]
    fn strict_mode_rejects_unsafe_numbers_with_their_path() {
        let strict = Canonicalizer::strict();
        let v = json!({"a": [0, {"b/c": 9_007_199_254_740_993_u64}]});
        let err = strict.to_vec(&v).unwrap_err();
        assert_eq!(
            err,
            JcsError::UnsafeNumber {
                path: "/a/1/b~1c".into(),
                number: "9007199254740993".into()
            }
        );
        assert!(strict.to_vec(&json!(9_007_199_254_740_991_u64)).is_ok());
        assert!(strict.to_vec(&json!(-9_007_199_254_740_991_i64)).is_ok());
        assert!(strict.to_vec(&json!(-9_007_199_254_740_992_i64)).is_err());
        assert!(strict.to_vec(&json!(1e30)).is_err());
        assert!(strict.to_vec(&json!(9_007_199_254_740_992.0)).is_err());
        assert!(strict.to_vec(&json!(0.000_001)).is_ok());
        // RFC mode rounds like JSON.parse.
        assert_eq!(canon(&json!(9_007_199_254_740_993_u64)), "9007199254740992");
        assert_eq!(canon(&json!(u64::MAX)), "18446744073709552000");
        assert_eq!(canon(&json!(i64::MIN)), "-9223372036854776000");
    }

    #[test]
    fn depth_limit_is_typed_and_counts_containers() {
        let c = Canonicalizer::rfc8785().with_max_depth(3);
        assert!(c.to_vec(&json!([[[1]]])).is_ok());
        let err = c.to_vec(&json!([[[[1]]]])).unwrap_err();
        assert_eq!(
            err,
            JcsError::TooDeep {
                path: "/0/0/0".into(),
                limit: 3
            }
        );
        assert!(c.to_vec(&json!({"a": {"b": {"c": {}}}})).is_err());
    }

    #[test]
    fn deep_value_built_in_code_does_not_overflow_the_stack() {
        let mut v = json!(1);
        for _ in 0..2_000 {
            v = Value::Array(vec![v]);
        }
        let err = Canonicalizer::strict().to_vec(&v).unwrap_err();
        assert!(matches!(err, JcsError::TooDeep { limit: 128, .. }));
        // Dismantle iteratively: serde_json's recursive drop is not what we test here.
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn integral_doubles_and_negative_zero() {
        assert_eq!(format_f64(-0.0), "0");
        assert_eq!(format_f64(56.0), "56");
        assert_eq!(format_f64(-3.0), "-3");
        assert_eq!(format_f64(1e21), "1e+21");
        assert_eq!(format_f64(1e20), "100000000000000000000");
        assert_eq!(format_f64(1e-7), "1e-7");
        assert_eq!(format_f64(123e-9), "1.23e-7");
        assert_eq!(format_f64(0.000_001), "0.000001");
        assert_eq!(format_f64(1.5), "1.5");
        assert_eq!(format_f64(-1234.5678), "-1234.5678");
        assert_eq!(format_f64(f64::NAN), "null");
    }
}
