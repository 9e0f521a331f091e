//! The signed action envelope, its MAC input and its two wire forms.
//!
//! # Format (version 1)
//!
//! ```json
//! {"action":{…},"alg":"HS256","exp":1700000300,"iat":1700000000,
//!  "kid":"2024-01","mac":"<43 base64url chars>","nonce":"<16–128 base64url chars>","v":1}
//! ```
//!
//! | field    | type                                 | meaning |
//! |----------|--------------------------------------|---------|
//! | `v`      | integer, `1`                         | format version |
//! | `kid`    | string, 1–64 of `[A-Za-z0-9._:-]`    | key id in the verifier's [`KeyRing`] |
//! | `alg`    | string, `"HS256"`                    | HMAC-SHA256 |
//! | `iat`    | integer seconds since the Unix epoch | issued at |
//! | `exp`    | integer seconds, `> iat`             | expires at (not valid from `exp` on) |
//! | `nonce`  | string, 16–128 of `[A-Za-z0-9_-]`    | single-use value (128 random bits by default) |
//! | `action` | any JSON value                       | what to do |
//! | `mac`    | string, base64url without padding    | 32-byte HMAC-SHA256 tag |
//!
//! Every field is required, no other field is allowed, and times are safe integers
//! (`0 ..= 2^53 - 1`).
//!
//! # What the MAC covers
//!
//! `mac = HMAC-SHA256(secret, "kubesafe.envelope.v1\n" || JCS(envelope without "mac"))`
//!
//! where `JCS` is the RFC 8785 canonical form (see [`crate::jcs`], strict number policy). The
//! canonical form makes key order and whitespace irrelevant. Spellings with one canonical
//! form share a MAC, so the parsed action is normalised to what that form reads back as:
//! `3.0`, `30e-1` and `3E0` arrive as the integer `3`, `-0` as `0`, `"\u0061"` as `"a"` —
//! whoever relays an envelope cannot change how an authentic action is read. The fixed prefix is a domain
//! separator: no JSON text starts with `k`, so a MAC made in legacy mode over a JSON body, or
//! by another system sharing the secret, can never be replayed as an envelope MAC.
//!
//! # Wire forms
//!
//! * JSON: any JSON object with the fields above ([`Envelope::to_json`] writes the canonical
//!   form, [`Envelope::from_json`] accepts any key order and whitespace);
//! * token: `ks1.` followed by the base64url (no padding) of the canonical JSON
//!   ([`Envelope::to_token`], [`Envelope::from_token`]) — for headers and command lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::jcs::{self, Canonicalizer, JcsError, MAX_SAFE_INTEGER, Sink};
use crate::json::{self, Limits, ParseError};
use crate::keys::{HmacSha256, Key, KeyError, KeyRing, validate_kid};

/// The envelope format version this crate writes and reads.
pub const ENVELOPE_VERSION: u64 = 1;

/// The domain-separation prefix of the MAC input.
pub const MAC_DOMAIN: &[u8] = b"kubesafe.envelope.v1\n";

/// The prefix of the token wire form.
pub const TOKEN_PREFIX: &str = "ks1.";

/// Length of an HMAC-SHA256 tag.
pub const MAC_LEN: usize = 32;

/// The longest lifetime [`KeyRing::sign`] accepts (a verifier's own limit is usually
/// shorter, see [`crate::Verifier::with_max_ttl`]).
pub const MAX_SIGN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The MAC algorithm of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// HMAC with SHA-256, wire name `HS256` (as in JWS, RFC 7518 §3.2).
    HmacSha256,
}

impl Algorithm {
    /// The wire name.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "HS256",
        }
    }
}

/// Why an envelope (or a legacy body) is structurally unacceptable. Each variant names the
/// field concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedError {
    /// The input is not acceptable JSON (syntax, size, depth, duplicate member).
    #[error("{0}")]
    Json(#[from] ParseError),
    /// A token is not `ks1.` + base64url, or does not decode.
    #[error("token: {reason}")]
    Token {
        /// What is wrong.
        reason: String,
    },
    /// The envelope is not a JSON object.
    #[error("envelope is not a JSON object")]
    NotAnObject,
    /// A required field is missing.
    #[error("field `{field}` is missing")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// The expected type.
        expected: &'static str,
    },
    /// `v` is not a version this crate reads.
    #[error(
        "field `v`: unsupported envelope version {found}, this verifier reads version {ENVELOPE_VERSION}"
    )]
    UnsupportedVersion {
        /// The version found.
        found: String,
    },
    /// `alg` names an algorithm this crate does not accept (only `HS256`).
    #[error("field `alg`: unsupported algorithm {found:?}, only \"HS256\" is accepted")]
    UnsupportedAlgorithm {
        /// The algorithm found.
        found: String,
    },
    /// A field has the right type but an unacceptable value.
    #[error("field `{field}`: {reason}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The envelope has a field this version does not define (it would not be covered by
    /// the MAC).
    #[error("unknown field `{field}`")]
    UnknownField {
        /// The field.
        field: String,
    },
    /// The action has no canonical form under the strict policy.
    #[error("field `action`: {0}")]
    Action(JcsError),
    /// The action does not match the type the caller asked for.
    #[error("field `action` does not match the expected schema: {message}")]
    ActionSchema {
        /// What `serde` reported (names the offending field).
        message: String,
    },
}

/// A single-use envelope nonce: 16–128 characters of the base64url alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nonce(String);

impl Nonce {
    /// 128 bits from the operating system's random source, base64url-encoded (22 chars).
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS random source fails.
    pub fn random() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Nonce(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A caller-chosen nonce (it must never repeat for the same key within the lifetime of
    /// its envelopes).
    ///
    /// # Errors
    /// [`MalformedError::InvalidField`] (`nonce`) for a wrong length or alphabet.
    pub fn new(nonce: impl Into<String>) -> Result<Self, MalformedError> {
        let nonce = nonce.into();
        check_nonce(&nonce)?;
        Ok(Nonce(nonce))
    }

    /// The nonce text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_nonce(nonce: &str) -> Result<(), MalformedError> {
    let invalid = |reason: &str| MalformedError::InvalidField {
        field: "nonce",
        reason: reason.to_owned(),
    };
    if !(16..=128).contains(&nonce.len()) {
        return Err(invalid("must be 16 to 128 characters"));
    }
    if !nonce
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "only base64url characters A-Z a-z 0-9 - _ are allowed",
        ));
    }
    Ok(())
}

/// A signed action envelope. Build one with [`KeyRing::sign`]; read one with
/// [`Envelope::from_json`], [`Envelope::from_token`] or [`Envelope::parse`]; check it with
/// [`crate::Verifier`].
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    kid: String,
    alg: Algorithm,
    iat: u64,
    exp: u64,
    nonce: String,
    action: Value,
    mac: [u8; MAC_LEN],
}

impl Envelope {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The MAC algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Issued at, seconds since the Unix epoch.
    pub fn iat(&self) -> u64 {
        self.iat
    }

    /// Expires at, seconds since the Unix epoch.
    pub fn exp(&self) -> u64 {
        self.exp
    }

    /// The nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The (not yet verified!) action.
    pub fn action(&self) -> &Value {
        &self.action
    }

    /// The MAC tag.
    pub fn mac(&self) -> &[u8; MAC_LEN] {
        &self.mac
    }

    /// Moves out (kid, nonce, action) without copying.
    pub(crate) fn into_parts(self) -> (String, String, Value) {
        (self.kid, self.nonce, self.action)
    }

    /// Appends the exact MAC input (domain prefix + canonical JSON without `mac`) to `out`.
    ///
    /// # Errors
    /// [`MalformedError::Action`] when the action has no strict canonical form.
    pub fn write_mac_input(&self, out: &mut Vec<u8>) -> Result<(), MalformedError> {
        out.extend_from_slice(MAC_DOMAIN);
        self.write_canonical(out, None)
    }

    /// The exact MAC input bytes.
    ///
    /// # Errors
    /// As [`Envelope::write_mac_input`].
    pub fn mac_input(&self) -> Result<Vec<u8>, MalformedError> {
        let mut out = Vec::with_capacity(256);
        self.write_mac_input(&mut out)?;
        Ok(out)
    }

    /// Canonical JSON of the envelope; with `mac`, the full wire form.
    fn write_canonical<S: Sink>(
        &self,
        out: &mut S,
        mac: Option<&[u8; MAC_LEN]>,
    ) -> Result<(), MalformedError> {
        // Member names in UTF-16 order: action, alg, exp, iat, kid, mac, nonce, v.
        out.put(b"{\"action\":");
        Canonicalizer::strict()
            .write_to(&self.action, out)
            .map_err(MalformedError::Action)?;
        out.put(b",\"alg\":");
        jcs::write_string(self.alg.as_str(), out);
        out.put(b",\"exp\":");
        jcs::write_u64(self.exp, out);
        out.put(b",\"iat\":");
        jcs::write_u64(self.iat, out);
        out.put(b",\"kid\":");
        jcs::write_string(&self.kid, out);
        if let Some(mac) = mac {
            out.put(b",\"mac\":\"");
            let mut buf = [0u8; 44];
            let n = URL_SAFE_NO_PAD
                .encode_slice(mac, &mut buf)
                .unwrap_or_default();
            out.put(buf.get(..n).unwrap_or_default());
            out.put_byte(b'"');
        }
        out.put(b",\"nonce\":");
        jcs::write_string(&self.nonce, out);
        out.put(b",\"v\":");
        jcs::write_u64(ENVELOPE_VERSION, out);
        out.put_byte(b'}');
        Ok(())
    }

    /// Computes the envelope's MAC with `key`, streaming the canonical bytes into the MAC.
    pub(crate) fn compute_mac(&self, key: &Key) -> Result<HmacSha256, MalformedError> {
        let mut sink = MacSink {
            mac: key.mac(),
            buf: [0; 256],
            len: 0,
        };
        sink.put(MAC_DOMAIN);
        self.write_canonical(&mut sink, None)?;
        sink.flush();
        Ok(sink.mac)
    }

    /// The canonical JSON wire form (RFC 8785, all fields including `mac`).
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(256);
        // The action was canonicalised when the envelope was signed or parsed.
        if self.write_canonical(&mut out, Some(&self.mac)).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The token wire form: `ks1.` + base64url(canonical JSON).
    pub fn to_token(&self) -> String {
        let mut token = String::from(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(self.to_json(), &mut token);
        token
    }

    /// Parses the JSON wire form (any member order, any whitespace) within `limits`.
    ///
    /// # Errors
    /// [`MalformedError`] naming the offending field.
    pub fn from_json(input: &[u8], limits: &Limits) -> Result<Self, MalformedError> {
        let value = json::parse(input, limits)?;
        Self::from_value(value)
    }

    /// Parses the token wire form within `limits` (which bound the decoded JSON).
    ///
    /// # Errors
    /// [`MalformedError::Token`] for a bad prefix or base64, else as [`Envelope::from_json`].
    pub fn from_token(token: &str, limits: &Limits) -> Result<Self, MalformedError> {
        let body = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| MalformedError::Token {
                reason: format!("must start with `{TOKEN_PREFIX}`"),
            })?;
        // Bound the work before decoding: base64 expands 3 bytes into 4 characters.
        if body.len() / 4 * 3 > limits.max_bytes() {
            return Err(MalformedError::Json(ParseError::TooLarge {
                len: body.len() / 4 * 3,
                max: limits.max_bytes(),
            }));
        }
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| MalformedError::Token {
                reason: format!("invalid base64url: {e}"),
            })?;
        Self::from_json(&json, limits)
    }

    /// Parses either wire form: a token if the input starts with `ks1.`, JSON otherwise.
    ///
    /// # Errors
    /// As [`Envelope::from_json`] / [`Envelope::from_token`].
    pub fn parse(input: &[u8], limits: &Limits) -> Result<Self, MalformedError> {
        let trimmed = input.trim_ascii();
        if trimmed.starts_with(TOKEN_PREFIX.as_bytes()) {
            let token = std::str::from_utf8(trimmed).map_err(|_| MalformedError::Token {
                reason: "not ASCII".to_owned(),
            })?;
            Self::from_token(token, limits)
        } else {
            Self::from_json(input, limits)
        }
    }

    /// Reads an envelope from a parsed JSON value, checking every field.
    ///
    /// # Errors
    /// [`MalformedError`] naming the offending field.
    pub fn from_value(value: Value) -> Result<Self, MalformedError> {
        let Value::Object(mut map) = value else {
            return Err(MalformedError::NotAnObject);
        };
        // Version first, so that a future format gets a clear error.
        match take(&mut map, "v")? {
            Value::Number(n) if n.as_u64() == Some(ENVELOPE_VERSION) => {}
            Value::Number(n) => {
                return Err(MalformedError::UnsupportedVersion {
                    found: n.to_string(),
                });
            }
            _ => return Err(wrong_type("v", "an integer")),
        }
        let alg = match take(&mut map, "alg")? {
            Value::String(s) if s == "HS256" => Algorithm::HmacSha256,
            Value::String(found) => return Err(MalformedError::UnsupportedAlgorithm { found }),
            _ => return Err(wrong_type("alg", "a string")),
        };
        let kid = take_string(&mut map, "kid")?;
        validate_kid(&kid).map_err(|e| MalformedError::InvalidField {
            field: "kid",
            reason: match e {
                KeyError::InvalidKid { reason, .. } => reason.to_owned(),
                other => other.to_string(),
            },
        })?;
        let iat = take_time(&mut map, "iat")?;
        let exp = take_time(&mut map, "exp")?;
        if exp <= iat {
            return Err(MalformedError::InvalidField {
                field: "exp",
                reason: format!("must be later than iat ({exp} <= {iat})"),
            });
        }
        let nonce = take_string(&mut map, "nonce")?;
        check_nonce(&nonce)?;
        let mac_text = take_string(&mut map, "mac")?;
        let mac = decode_mac(&mac_text)?;
        let mut action = take(&mut map, "action")?;
        Canonicalizer::strict()
            .check(&action)
            .map_err(MalformedError::Action)?;
        canonical_numbers(&mut action, 0);
        if let Some(field) = map.keys().next() {
            return Err(MalformedError::UnknownField {
                field: field.clone(),
            });
        }
        Ok(Envelope {
            kid,
            alg,
            iat,
            exp,
            nonce,
            action,
            mac,
        })
    }
}

/// Rewrites every integral double (`3.0`, `30e-1`, `-0`) as the integer its canonical form
/// spells (`3`, `0`), so that the action a verifier hands out is the value the MAC covers.
///
/// JCS gives `3`, `3.0` and `3E0` one canonical form, hence one MAC. Without this, which
/// spelling arrived would still show in the parsed value (`as_u64()` is `None` for a
/// double, a typed `u32` field rejects it): whoever relays an envelope could change how an
/// authentic action is read without touching its MAC. Call it only on a value the strict
/// canonicaliser accepted (depth ≤ its limit, doubles within ±(2^53 − 1), where every
/// integral double converts exactly).
fn canonical_numbers(value: &mut Value, depth: usize) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() <= MAX_SAFE_INTEGER as f64
            {
                // Exact: an integral double of magnitude below 2^53.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let int = if f >= 0.0 {
                    serde_json::Number::from(f as u64)
                } else {
                    serde_json::Number::from(f as i64)
                };
                *n = int;
            }
        }
        Value::Array(items) if depth < jcs::DEFAULT_MAX_DEPTH => {
            for item in items {
                canonical_numbers(item, depth + 1);
            }
        }
        Value::Object(map) if depth < jcs::DEFAULT_MAX_DEPTH => {
            for item in map.values_mut() {
                canonical_numbers(item, depth + 1);
            }
        }
        _ => {}
    }
}

/// Feeds canonical bytes to an HMAC through a small buffer (fewer, larger `update`s and no
/// heap allocation).
struct MacSink {
    mac: HmacSha256,
    buf: [u8; 256],
    len: usize,
}

impl MacSink {
    fn flush(&mut self) {
        self.mac
            .update(self.buf.get(..self.len).unwrap_or_default());
        self.len = 0;
    }
}

impl Sink for MacSink {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buf.len() {
            self.flush();
        }
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            // Longer than the whole buffer (which is empty now): hash it directly.
            None => self.mac.update(bytes),
        }
    }

    #[inline]
    fn put_byte(&mut self, byte: u8) {
        if self.len == self.buf.len() {
            self.flush();
        }
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }
}

fn wrong_type(field: &'static str, expected: &'static str) -> MalformedError {
    MalformedError::WrongType { field, expected }
}

fn take(map: &mut Map<String, Value>, field: &'static str) -> Result<Value, MalformedError> {
    map.remove(field)
        .ok_or(MalformedError::MissingField { field })
}

fn take_string(
    map: &mut Map<String, Value>,
    field: &'static str,
) -> Result<String, MalformedError> {
    match take(map, field)? {
        Value::String(s) => Ok(s),
        _ => Err(wrong_type(field, "a string")),
    }
}

fn take_time(map: &mut Map<String, Value>, field: &'static str) -> Result<u64, MalformedError> {
    match take(map, field)? {
        Value::Number(n) => match n.as_u64() {
            Some(t) if t <= MAX_SAFE_INTEGER => Ok(t),
            Some(_) => Err(MalformedError::InvalidField {
                field,
                reason: "must be at most 2^53 - 1".to_owned(),
            }),
            None => Err(wrong_type(
                field,
                "a non-negative integer (seconds since the Unix epoch)",
            )),
        },
        _ => Err(wrong_type(
            field,
            "a non-negative integer (seconds since the Unix epoch)",
        )),
    }
}

fn decode_mac(text: &str) -> Result<[u8; MAC_LEN], MalformedError> {
    let invalid = |reason: String| MalformedError::InvalidField {
        field: "mac",
        reason,
    };
    // 32 bytes are exactly 43 unpadded base64url characters; refuse truncated tags up front.
    if text.len() != 43 {
        return Err(invalid(format!(
            "must be 43 base64url characters (a 32-byte HMAC-SHA256 tag), found {}",
            text.len()
        )));
    }
    let mut mac = [0u8; MAC_LEN];
    let mut buf = [0u8; 33];
    let n = URL_SAFE_NO_PAD
        .decode_slice(text, &mut buf)
        .map_err(|e| invalid(format!("invalid base64url: {e}")))?;
    let decoded = buf
        .get(..n)
        .filter(|d| d.len() == MAC_LEN)
        .ok_or_else(|| invalid(format!("decodes to {n} bytes, expected {MAC_LEN}")))?;
    mac.copy_from_slice(decoded);
    Ok(mac)
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// No active key, or the random source failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The action does not serialise to JSON.
    #[error("action does not serialise to JSON: {0}")]
    Serialize(String),
    /// The action has no strict canonical form.
    #[error("action: {0}")]
    Canonical(#[from] JcsError),
    /// The lifetime is zero, longer than [`MAX_SIGN_TTL`], or the times are out of range.
    #[error("invalid lifetime: {0}")]
    Ttl(String),
}

/// Seconds since the Unix epoch now (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl KeyRing {
    /// Signs `action` with the active key, valid from now for `ttl`, with a random nonce.
    ///
    /// ```
    /// use kubesafe_signing::{KeyRing, Secret};
    /// use std::time::Duration;
    /// let mut ring = KeyRing::new();
    /// ring.insert_active("k1", Secret::new(vec![42; 32])?)?;
    /// let env = ring.sign(&serde_json::json!({"type": "restart_pod"}), Duration::from_secs(300))?;
    /// assert_eq!(env.kid(), "k1");
    /// assert_eq!(env.exp() - env.iat(), 300);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`SignError`].
    pub fn sign<A: Serialize + ?Sized>(
        &self,
        action: &A,
        ttl: Duration,
    ) -> Result<Envelope, SignError> {
        self.sign_at(action, unix_now(), ttl, Nonce::random()?)
    }

    /// Signs `action` with the active key, issued at `iat` (Unix seconds), valid for `ttl`
    /// (whole seconds), with the given nonce.
    ///
    /// # Errors
    /// [`SignError`].
    pub fn sign_at<A: Serialize + ?Sized>(
        &self,
        action: &A,
        iat: u64,
        ttl: Duration,
        nonce: Nonce,
    ) -> Result<Envelope, SignError> {
        let (kid, key) = self.active()?;
        let secs = ttl.as_secs();
        if secs == 0 || ttl > MAX_SIGN_TTL {
            return Err(SignError::Ttl(format!(
                "{secs} s; must be 1 s to {} s",
                MAX_SIGN_TTL.as_secs()
            )));
        }
        let exp = iat
            .checked_add(secs)
            .filter(|e| *e <= MAX_SAFE_INTEGER)
            .ok_or_else(|| SignError::Ttl(format!("iat {iat} + {secs} s is out of range")))?;
        let mut action =
            serde_json::to_value(action).map_err(|e| SignError::Serialize(e.to_string()))?;
        Canonicalizer::strict()
            .check(&action)
            .map_err(SignError::Canonical)?;
        canonical_numbers(&mut action, 0);
        let mut env = Envelope {
            kid: kid.to_owned(),
            alg: Algorithm::HmacSha256,
            iat,
            exp,
            nonce: nonce.0,
            action,
            mac: [0; MAC_LEN],
        };
        let mac = env.compute_mac(key).map_err(|e| match e {
            MalformedError::Action(j) => SignError::Canonical(j),
            other => SignError::Serialize(other.to_string()),
        })?;
        env.mac.copy_from_slice(&mac.finalize().into_bytes());
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Secret;
    use serde_json::json;

    fn ring() -> KeyRing {
        let mut r = KeyRing::new();
        r.insert_active("k1", Secret::new(vec![0x42; 32]).unwrap())
            .unwrap();
        r
    }

    fn sample() -> Envelope {
        ring()
            .sign_at(
                &json!({"type": "restart_pod", "namespace": "prod", "name": "web-0"}),
                1_700_000_000,
                Duration::from_secs(300),
                Nonce::new("AAAAAAAAAAAAAAAAAAAAAA").unwrap(),
            )
            .unwrap()
    }

    #[test]
    fn canonical_json_layout() {
        let env = sample();
        let json = env.to_json();
        assert!(json.starts_with(
            r#"{"action":{"name":"web-0","namespace":"prod","type":"restart_pod"},"alg":"HS256","exp":1700000300,"iat":1700000000,"kid":"k1","mac":""#
        ), "{json}");
        assert!(
            json.ends_with(r#"","nonce":"AAAAAAAAAAAAAAAAAAAAAA","v":1}"#),
            "{json}"
        );
        // The canonical form is its own JCS.
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(Canonicalizer::strict().to_string(&v).unwrap(), json);
        let input = env.mac_input().unwrap();
        assert!(input.starts_with(MAC_DOMAIN));
        assert!(!String::from_utf8(input).unwrap().contains("\"mac\""));
    }

    #[test]
    fn both_wire_forms_round_trip() {
        let env = sample();
        let limits = Limits::default();
        assert_eq!(
            Envelope::from_json(env.to_json().as_bytes(), &limits).unwrap(),
            env
        );
        let token = env.to_token();
        assert!(token.starts_with("ks1."));
        assert_eq!(Envelope::from_token(&token, &limits).unwrap(), env);
        assert_eq!(Envelope::parse(token.as_bytes(), &limits).unwrap(), env);
        assert_eq!(
            Envelope::parse(env.to_json().as_bytes(), &limits).unwrap(),
            env
        );
    }

    fn field_error(mutate: impl FnOnce(&mut Map<String, Value>)) -> MalformedError {
        let Value::Object(mut map) = serde_json::from_str(&sample().to_json()).unwrap() else {
            unreachable!()
        };
        mutate(&mut map);
        Envelope::from_value(Value::Object(map)).unwrap_err()
    }

    #[test]
    fn strict_fields_name_what_is_wrong() {
        assert_eq!(
            field_error(|m| {
                m.remove("nonce");
            }),
            MalformedError::MissingField { field: "nonce" }
        );
        assert_eq!(
            field_error(|m| {
                m.insert("v".into(), json!(2));
            }),
            MalformedError::UnsupportedVersion { found: "2".into() }
        );
        assert_eq!(
            field_error(|m| {
                m.insert("v".into(), json!("1"));
            }),
            MalformedError::WrongType {
                field: "v",
                expected: "an integer"
            }
        );
        assert_eq!(
            field_error(|m| {
                m.insert("alg".into(), json!("none"));
            }),
            MalformedError::UnsupportedAlgorithm {
                found: "none".into()
            }
        );
        assert!(matches!(
            field_error(|m| {
                m.insert("iat".into(), json!(1.5));
            }),
            MalformedError::WrongType { field: "iat", .. }
        ));
        assert!(matches!(
            field_error(|m| {
                m.insert("exp".into(), json!(-1));
            }),
            MalformedError::WrongType { field: "exp", .. }
        ));
        assert!(matches!(
            field_error(|m| {
                m.insert("exp".into(), json!(1_700_000_000));
            }),
            MalformedError::InvalidField { field: "exp", .. }
        ));
        assert!(matches!(
            field_error(|m| {
                m.insert("iat".into(), json!(u64::MAX));
            }),
            MalformedError::InvalidField { field: "iat", .. }
        ));
        assert!(matches!(
            field_error(|m| {
                m.insert("kid".into(), json!("bad kid"));
            }),
            MalformedError::InvalidField { field: "kid", .. }
        ));
        assert!(matches!(
            field_error(|m| {
                m.insert("nonce".into(), json!("short"));
            }),
            MalformedError::InvalidField { field: "nonce", .. }
        ));
        assert!(matches!(
            field_error(|m| {
                m.insert("mac".into(), json!("AAAA"));
            }),
            MalformedError::InvalidField { field: "mac", .. }
        ));
        assert!(matches!(
            field_error(|m| {
                m.insert("mac".into(), json!(7));
            }),
            MalformedError::WrongType { field: "mac", .. }
        ));
        assert_eq!(
            field_error(|m| {
                m.insert("extra".into(), json!(true));
            }),
            MalformedError::UnknownField {
                field: "extra".into()
            }
        );
        assert_eq!(
            Envelope::from_value(json!([1])).unwrap_err(),
            MalformedError::NotAnObject
        );
    }

    #[test]
    fn mac_with_nonzero_trailing_bits_is_rejected() {
        let env = sample();
        let json = env.to_json();
        let mac = URL_SAFE_NO_PAD.encode(env.mac());
        // The 43rd character carries 4 data bits and 2 zero bits; set a zero bit.
        let last = mac.chars().last().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.find(last).unwrap();
        let tweaked = alphabet.chars().nth(idx ^ 1).unwrap();
        let bad = json.replace(&mac, &format!("{}{tweaked}", &mac[..42]));
        assert!(matches!(
            Envelope::from_json(bad.as_bytes(), &Limits::default()),
            Err(MalformedError::InvalidField { field: "mac", .. })
        ));
    }

    #[test]
    fn signing_limits() {
        let r = ring();
        let n = || Nonce::new("BBBBBBBBBBBBBBBBBBBBBB").unwrap();
        assert!(matches!(
            r.sign_at(&json!(1), 10, Duration::from_millis(500), n()),
            Err(SignError::Ttl(_))
        ));
        assert!(matches!(
            r.sign_at(&json!(1), 10, MAX_SIGN_TTL + Duration::from_secs(1), n()),
            Err(SignError::Ttl(_))
        ));
        assert!(matches!(
            r.sign_at(&json!({"n": 1e300}), 10, Duration::from_secs(1), n()),
            Err(SignError::Canonical(JcsError::UnsafeNumber { .. }))
        ));
        assert!(matches!(
            KeyRing::new().sign_at(&json!(1), 10, Duration::from_secs(1), n()),
            Err(SignError::Key(KeyError::NoActiveKey))
        ));
        assert!(Nonce::new("has space in it!!").is_err());
        assert_eq!(Nonce::random().unwrap().as_str().len(), 22);
    }
}
