//! Strict, bounded JSON parsing into [`serde_json::Value`].
//!
//! [`parse`] differs from `serde_json::from_slice::<Value>` in three ways that matter for
//! signed data:
//!
//! * the input size and the nesting depth are bounded by [`Limits`] (checked before any
//!   parsing work, and during it — a deeply nested document ends in
//!   [`ParseError::TooDeep`] long before the stack is in danger);
//! * **duplicate object member names are rejected** ([`ParseError::DuplicateKey`]).
//!   RFC 8785 requires I-JSON input, which forbids them, and `serde_json` would silently
//!   keep the last one while another parser (a proxy, an audit tool) may keep the first:
//!   the signer and the executor could then disagree about what was signed;
//! * errors are typed and carry the line and column.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Upper bound on [`Limits::max_depth`]: `serde_json` itself stops at 128 levels.
pub const MAX_DEPTH_CAP: usize = 100;

/// Size and nesting limits for untrusted JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_bytes: usize,
    max_depth: usize,
}

impl Default for Limits {
    /// 64 KiB and 32 levels: an action request is a few hundred bytes and 3–4 levels deep.
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024,
            max_depth: 32,
        }
    }
}

impl Limits {
    /// Limits of `max_bytes` input bytes and `max_depth` nested arrays/objects
    /// (`max_depth` is capped at [`MAX_DEPTH_CAP`]).
    pub const fn new(max_bytes: usize, max_depth: usize) -> Self {
        Limits {
            max_bytes,
            max_depth: if max_depth > MAX_DEPTH_CAP {
                MAX_DEPTH_CAP
            } else {
                max_depth
            },
        }
    }

    /// The largest accepted input, in bytes.
    pub const fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The deepest accepted nesting of arrays and objects.
    pub const fn max_depth(&self) -> usize {
        self.max_depth
    }
}

/// Why JSON input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is larger than [`Limits::max_bytes`].
    #[error("input is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Input size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Arrays/objects are nested deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {max} levels at line {line}, column {column}")]
    TooDeep {
        /// The limit.
        max: usize,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// An object has the same member name twice.
    #[error("duplicate member name {key:?} at line {line}, column {column}")]
    DuplicateKey {
        /// The repeated name.
        key: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// The input is not JSON (syntax error, invalid UTF-8, lone surrogate escape, a
    /// number out of the double range, trailing characters, ...).
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        /// What `serde_json` reported.
        message: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
}

#[derive(Debug, Clone)]
enum Violation {
    TooDeep,
    Duplicate(String),
}

/// Parses `input` as one JSON document within `limits`.
///
/// # Errors
/// [`ParseError`] when the input is too large, too deep, has a duplicate member name or is
/// not JSON.
pub fn parse(input: &[u8], limits: &Limits) -> Result<Value, ParseError> {
    if input.len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            len: input.len(),
            max: limits.max_bytes,
        });
    }
    let violation = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(input);
    let seed = ValueSeed {
        depth: 0,
        max_depth: limits.max_depth,
        violation: &violation,
    };
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match result {
        Ok(v) => Ok(v),
        Err(e) => {
            let (line, column) = (e.line(), e.column());
            Err(match violation.take() {
                Some(Violation::TooDeep) => ParseError::TooDeep {
                    max: limits.max_depth,
                    line,
                    column,
                },
                Some(Violation::Duplicate(key)) => ParseError::DuplicateKey { key, line, column },
                None => {
                    let mut message = e.to_string();
                    // serde_json appends " at line L column C"; we report them separately.
                    if let Some(p) = message.rfind(" at line ") {
                        message.truncate(p);
                    }
                    if message.contains("recursion limit exceeded") {
                        ParseError::TooDeep {
                            max: limits.max_depth,
                            line,
                            column,
                        }
                    } else {
                        ParseError::Syntax {
                            message,
                            line,
                            column,
                        }
                    }
                }
            })
        }
    }
}

struct ValueSeed<'a> {
    depth: usize,
    max_depth: usize,
    violation: &'a Cell<Option<Violation>>,
}

impl ValueSeed<'_> {
    fn child(&self) -> ValueSeed<'_> {
        ValueSeed {
            depth: self.depth + 1,
            max_depth: self.max_depth,
            violation: self.violation,
        }
    }

    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= self.max_depth {
            self.violation.set(Some(Violation::TooDeep));
            return Err(E::custom("nesting too deep"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                self.violation.set(Some(Violation::Duplicate(key)));
                return Err(de::Error::custom("duplicate member name"));
            }
            let value = access.next_value_seed(self.child())?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicates_even_when_escaped_differently() {
        let err = parse(br#"{"a":1,"\u0061":2}"#, &Limits::default()).unwrap_err();
        assert!(matches!(err, ParseError::DuplicateKey { ref key, .. } if key == "a"));
        let err = parse(br#"{"x":{"k":1,"k":1}}"#, &Limits::default()).unwrap_err();
        assert!(matches!(err, ParseError::DuplicateKey { .. }), "{err}");
    }

    #[test]
    fn depth_is_bounded_without_recursion_blowup() {
        let limits = Limits::new(1 << 20, 4);
        assert!(parse(b"[[[[1]]]]", &limits).is_ok());
        assert!(matches!(
            parse(b"[[[[[1]]]]]", &limits),
            Err(ParseError::TooDeep { max: 4, .. })
        ));
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse(deep.as_bytes(), &Limits::new(1 << 20, 10_000)),
            Err(ParseError::TooDeep {
                max: MAX_DEPTH_CAP,
                ..
            })
        ));
        let deep_obj = r#"{"a":"#.repeat(50_000);
        assert!(matches!(
            parse(deep_obj.as_bytes(), &Limits::new(1 << 20, 32)),
            Err(ParseError::TooDeep { max: 32, .. })
        ));
    }

    #[test]
    fn size_is_checked_first() {
        let err = parse(&[b' '; 11], &Limits::new(10, 4)).unwrap_err();
        assert_eq!(err, ParseError::TooLarge { len: 11, max: 10 });
    }

    #[test]
    fn syntax_errors_carry_position() {
        let err = parse(b"{\n  \"a\": tru }", &Limits::default()).unwrap_err();
        assert!(matches!(err, ParseError::Syntax { line: 2, .. }), "{err:?}");
        assert!(matches!(
            parse(b"1 2", &Limits::default()),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse(br#""\ud800""#, &Limits::default()),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse(b"1e400", &Limits::default()),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse(b"\xff", &Limits::default()),
            Err(ParseError::Syntax { .. })
        ));
    }
}
