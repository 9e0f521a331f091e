//! Chain hashes, HMAC keys and the sealer that turns records into chained lines.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::record::{AuditRecord, SealedRecord};

type HmacSha256 = Hmac<Sha256>;

// The keyed HMAC state an `AuditKey` keeps (SHA-256 states after absorbing the padded
// key) is as secret as the key. `Hmac<Sha256>` holds it in two `Sha256VarCore`s, which
// wipe themselves on drop only with `sha2`'s `zeroize` feature: fail the build without it.
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<sha2::block_api::Sha256VarCore>();
};

/// A 32-byte chain hash (SHA-256 or HMAC-SHA256), written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prevHash` of the first record of a log: 32 zero bytes.
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    /// The 64-digit lowercase hex form.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        push_hex(&self.0, &mut s);
        s
    }

    /// Parses exactly 64 lowercase hex digits (the only form written to a log).
    pub fn from_hex(s: &str) -> Option<ChainHash> {
        Self::from_hex_bytes(s.as_bytes())
    }

    /// [`ChainHash::from_hex`] on bytes.
    pub(crate) fn from_hex_bytes(b: &[u8]) -> Option<ChainHash> {
        let b: &[u8; 64] = b.try_into().ok()?;
        // Branch-free and written byte by byte over fixed-size arrays so that the
        // compiler vectorises both loops (SSE2 on x86-64): hex digits of hashes are
        // random, so a branch per digit would mispredict half the time, and a table
        // lookup per digit was 3x slower (this runs twice per verified record).
        let mut val = [0u8; 64];
        let mut ok = true;
        for (v, &c) in val.iter_mut().zip(b) {
            let digit = c.wrapping_sub(b'0');
            let letter = c.wrapping_sub(b'a');
            ok &= (digit < 10) | (letter < 6);
            *v = if digit < 10 {
                digit
            } else {
                letter.wrapping_add(10)
            };
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(val.chunks_exact(2)) {
            *o = (pair[0] << 4) | (pair[1] & 0x0f);
        }
        ok.then_some(ChainHash(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

pub(crate) fn push_hex(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

/// Decodes hex (either case, surrounding whitespace ignored) into a buffer that is wiped
/// on drop and never reallocated (so no stray copy of a secret is left behind).
pub(crate) fn decode_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for p in s.as_bytes().chunks_exact(2) {
        let hi = hex_val(p[0].to_ascii_lowercase())?;
        let lo = hex_val(p[1].to_ascii_lowercase())?;
        out.push((hi << 4) | lo);
    }
    Some(out)
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl FromStr for ChainHash {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ChainHash::from_hex(s)
            .ok_or_else(|| Error::invalid("hash", "expected 64 lowercase hex digits"))
    }
}

impl serde::Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ChainHash::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lowercase hex digits"))
    }
}

/// The end of a chain: the last record's `seq` and `hash` (`seq` 0 and
/// [`ChainHash::ZERO`] for an empty log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ChainHead {
    /// Sequence number of the last record (0 when empty).
    pub seq: u64,
    /// Hash of the last record ([`ChainHash::ZERO`] when empty).
    pub hash: ChainHash,
}

/// Minimum secret length accepted for HMAC keys (bytes).
pub const MIN_KEY_LEN: usize = 16;

/// An HMAC-SHA256 key with its id. Records sealed with it carry `keyId` and
/// `keyCheck` (see the [crate docs](crate#keyed-chains)).
///
/// Key file format (JSON): `{"keyId": "audit-2025", "secret": "<hex, at least 16 bytes>"}`.
#[derive(Clone)]
pub struct AuditKey {
    id: String,
    secret: Zeroizing<Vec<u8>>,
    mac: HmacSha256,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The message whose HMAC (first 8 bytes, hex) is a key's [`AuditKey::key_check`].
const KEY_CHECK_MESSAGE: &[u8] = b"kubesafe-audit-log key check v1";

impl AuditKey {
    /// A key from its id and secret bytes (at least [`MIN_KEY_LEN`] bytes; the id is
    /// 1–128 printable ASCII characters).
    pub fn new(id: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self> {
        let id = id.into();
        let secret = Zeroizing::new(secret.into());
        if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidKey {
                what: format!("id {id:?}"),
                message: "key id must be 1-128 printable ASCII characters without spaces".into(),
            });
        }
        if secret.len() < MIN_KEY_LEN {
            return Err(Error::InvalidKey {
                what: format!("id {id:?}"),
                message: format!(
                    "secret is {} bytes; at least {MIN_KEY_LEN} required",
                    secret.len()
                ),
            });
        }
        let mac =
            <HmacSha256 as KeyInit>::new_from_slice(&secret).map_err(|_| Error::InvalidKey {
                what: format!("id {id:?}"),
                message: "unusable HMAC key".into(),
            })?;
        Ok(AuditKey { id, secret, mac })
    }

    /// Parses the JSON key-file format `{"keyId": ..., "secret": "<hex>"}`; `what` names
    /// the source in errors. Error messages never quote the secret (nor any other value
    /// of the file), and the transient copies of the secret made while parsing are wiped.
    pub fn from_json(text: &str, what: &str) -> Result<Self> {
        let invalid = |message: String| Error::InvalidKey {
            what: what.to_owned(),
            message,
        };
        const FORMAT: &str = r#"expected {"keyId": "<id>", "secret": "<hex>"}"#;
        // Parsing into a `Value` can only fail on syntax, and serde_json's syntax errors
        // name a position, never a value (unlike "invalid type: integer `…`").
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("{FORMAT}: {e}")))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(invalid(format!("{FORMAT}: not a JSON object")));
        };
        let secret = match map.remove("secret") {
            Some(serde_json::Value::String(s)) => Zeroizing::new(s),
            Some(_) => return Err(invalid("\"secret\" must be a hex string".into())),
            None => return Err(invalid(format!("{FORMAT}: \"secret\" is missing"))),
        };
        let key_id = match map.remove("keyId") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(invalid("\"keyId\" must be a string".into())),
            None => return Err(invalid(format!("{FORMAT}: \"keyId\" is missing"))),
        };
        if let Some(field) = map.keys().next() {
            return Err(invalid(format!("{FORMAT}: unknown field {field:?}")));
        }
        let secret = decode_hex(&secret)
            .ok_or_else(|| invalid("\"secret\" is not an even number of hex digits".into()))?;
        AuditKey::new(key_id, secret.as_slice()).map_err(|e| match e {
            Error::InvalidKey { message, .. } => invalid(message),
            other => other,
        })
    }

    /// Reads a key file (see [`AuditKey`] for the format).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| Error::io("read key file", path, e))?,
        );
        AuditKey::from_json(&text, &path.display().to_string())
    }

    /// The key file JSON for this key (contains the secret).
    pub fn to_json(&self) -> String {
        let mut hex = Zeroizing::new(String::with_capacity(2 * self.secret.len()));
        push_hex(&self.secret, &mut hex);
        let id = serde_json::Value::String(self.id.clone());
        format!(r#"{{"keyId":{id},"secret":"{}"}}"#, hex.as_str())
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A 16-hex-digit key check value: the first 8 bytes of
    /// `HMAC-SHA256(secret, "kubesafe-audit-log key check v1")`. Stored in every keyed
    /// record so a verifier can tell "wrong key" from "modified record" even for a
    /// one-record log; it reveals nothing usable about the secret.
    pub fn key_check(&self) -> String {
        let tag = self
            .mac
            .clone()
            .chain_update(KEY_CHECK_MESSAGE)
            .finalize()
            .into_bytes();
        let mut s = String::new();
        push_hex(&tag[..8], &mut s);
        s
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }
}

/// A set of keys, looked up by id when verifying.
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: Vec<AuditKey>,
}

impl KeyRing {
    /// An empty ring (verifies unkeyed logs only).
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// Adds a key (replacing one with the same id).
    pub fn insert(&mut self, key: AuditKey) {
        self.keys.retain(|k| k.id != key.id);
        self.keys.push(key);
    }

    /// Adds a key, builder style.
    pub fn with(mut self, key: AuditKey) -> Self {
        self.insert(key);
        self
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&AuditKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl Iterator<Item = &AuditKey> {
        self.keys.iter()
    }
}

/// Computes a record hash over the canonical bytes given in pieces.
pub(crate) fn digest_parts(key: Option<&AuditKey>, parts: &[&[u8]]) -> ChainHash {
    let mut out = [0u8; 32];
    match key {
        None => {
            let mut h = Sha256::new();
            for p in parts {
                h.update(p);
            }
            out.copy_from_slice(&h.finalize());
        }
        Some(k) => {
            let mut m = k.mac();
            for p in parts {
                m.update(p);
            }
            out.copy_from_slice(&m.finalize().into_bytes());
        }
    }
    ChainHash(out)
}

/// Checks a stored hash against canonical bytes given in pieces (constant time when keyed).
pub(crate) fn verify_parts(key: Option<&AuditKey>, parts: &[&[u8]], stored: &ChainHash) -> bool {
    match key {
        None => {
            let mut h = Sha256::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().as_slice() == stored.0.as_slice()
        }
        Some(k) => {
            let mut m = k.mac();
            for p in parts {
                m.update(p);
            }
            m.verify_slice(&stored.0).is_ok()
        }
    }
}

/// SHA-256 of the concatenation of two byte slices, one 64-byte block per
/// [`SteppedSha256::step`] (see [`crate::canon::LineScan`] for why: the verifier
/// interleaves these steps with the scan of the next line). Running it to the end gives
/// exactly `Sha256::digest(a ‖ b)` (a unit test and a property test check it).
pub(crate) struct SteppedSha256<'a> {
    state: [u32; 8],
    parts: [&'a [u8]; 2],
    /// Full 64-byte blocks of `a ‖ b`, and how many are compressed.
    full: usize,
    next: usize,
    /// The final one or two blocks: the remaining bytes, `0x80`, zeros, the bit length.
    tail: [[u8; 64]; 2],
    tail_blocks: usize,
}

impl<'a> SteppedSha256<'a> {
    /// The initial hash value of SHA-256 (FIPS 180-4, 5.3.3).
    const IV: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    pub(crate) fn new(a: &'a [u8], b: &'a [u8]) -> Self {
        let len = a.len() + b.len();
        let full = len / 64;
        let rest = len % 64;
        let mut tail = [[0u8; 64]; 2];
        // The last `rest` bytes of `a ‖ b`: a suffix of `b`, possibly preceded by a
        // suffix of `a`.
        let from_b = rest.min(b.len());
        let from_a = rest - from_b;
        let flat = tail.as_flattened_mut();
        flat[..from_a].copy_from_slice(&a[a.len() - from_a..]);
        flat[from_a..rest].copy_from_slice(&b[b.len() - from_b..]);
        flat[rest] = 0x80;
        let tail_blocks = if rest < 56 { 1 } else { 2 };
        let bits = (len as u64).wrapping_mul(8).to_be_bytes();
        flat[64 * tail_blocks - 8..64 * tail_blocks].copy_from_slice(&bits);
        SteppedSha256 {
            state: Self::IV,
            parts: [a, b],
            full,
            next: 0,
            tail,
            tail_blocks,
        }
    }

    /// Compresses the next block; returns whether the hash is complete.
    #[inline]
    pub(crate) fn step(&mut self) -> bool {
        let k = self.next;
        if k < self.full {
            let [a, b] = self.parts;
            let at = 64 * k;
            let block: Option<&[u8; 64]> = if at + 64 <= a.len() {
                a.get(at..at + 64).and_then(|s| s.try_into().ok())
            } else if at >= a.len() {
                b.get(at - a.len()..at - a.len() + 64)
                    .and_then(|s| s.try_into().ok())
            } else {
                None
            };
            match block {
                Some(block) => {
                    sha2::block_api::compress256(&mut self.state, std::slice::from_ref(block))
                }
                None => {
                    // The block that straddles the two parts.
                    let mut block = [0u8; 64];
                    let in_a = a.len() - at;
                    block[..in_a].copy_from_slice(&a[at..]);
                    block[in_a..].copy_from_slice(&b[..64 - in_a]);
                    sha2::block_api::compress256(&mut self.state, &[block]);
                }
            }
        } else if let Some(block) = self
            .tail
            .get(k - self.full)
            .filter(|_| k - self.full < self.tail_blocks)
        {
            sha2::block_api::compress256(&mut self.state, std::slice::from_ref(block));
        } else {
            return true;
        }
        self.next += 1;
        self.next == self.full + self.tail_blocks
    }

    /// Runs the remaining steps and returns the digest.
    pub(crate) fn finish(mut self) -> [u8; 32] {
        while !self.step() {}
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// The sealing rules of a log: unkeyed SHA-256 or keyed HMAC-SHA256.
///
/// A `Chain` is stateless; the tail of the chain lives in the sink, which seals records
/// against it while holding its write lock (see [`AuditSink`](crate::AuditSink)).
#[derive(Clone, Debug, Default)]
pub struct Chain {
    key: Option<AuditKey>,
    key_check: Option<String>,
}

impl Chain {
    /// Unkeyed chain: `hash = SHA-256(canonical record)`.
    pub fn unkeyed() -> Self {
        Chain::default()
    }

    /// Keyed chain: `hash = HMAC-SHA256(key, canonical record)`; records carry the key id.
    pub fn keyed(key: AuditKey) -> Self {
        let key_check = Some(key.key_check());
        Chain {
            key: Some(key),
            key_check,
        }
    }

    /// The key, when keyed.
    pub fn key(&self) -> Option<&AuditKey> {
        self.key.as_ref()
    }

    /// Seals `record` as the successor of `head`.
    pub fn seal(&self, head: &ChainHead, record: &AuditRecord) -> Result<SealedRecord> {
        let mut buf = Vec::new();
        self.seal_line(head, record, &mut buf)
    }

    /// Seals `record` after `head`; `buf` is scratch space reused across calls.
    pub(crate) fn seal_line(
        &self,
        head: &ChainHead,
        record: &AuditRecord,
        buf: &mut Vec<u8>,
    ) -> Result<SealedRecord> {
        record.validate()?;
        let seq = head
            .seq
            .checked_add(1)
            .ok_or(Error::SeqOverflow(head.seq))?;
        let key_id = self.key.as_ref().map(|k| k.id.as_str());
        buf.clear();
        let at = crate::record::write_canonical(
            record,
            seq,
            &head.hash,
            key_id,
            self.key_check.as_deref(),
            buf,
        );
        // The stored line adds `,"hash":"<64 hex>"` (74 bytes) to the hashed bytes.
        let line_len = buf.len() + 74;
        if line_len > crate::record::MAX_RECORD_BYTES {
            return Err(Error::invalid(
                "record",
                format!(
                    "the sealed record would be {line_len} bytes, more than the maximum of {} bytes",
                    crate::record::MAX_RECORD_BYTES
                ),
            ));
        }
        let hash = digest_parts(self.key.as_ref(), &[buf.as_slice()]);
        let (before, after) = buf.split_at(at);
        let mut line = String::with_capacity(buf.len() + 76);
        // Both halves are UTF-8: the split point is just before an ASCII ','.
        line.push_str(std::str::from_utf8(before).unwrap_or_default());
        line.push_str(",\"hash\":\"");
        push_hex(&hash.0, &mut line);
        line.push('"');
        line.push_str(std::str::from_utf8(after).unwrap_or_default());
        Ok(SealedRecord {
            seq,
            prev_hash: head.hash,
            hash,
            key_id: key_id.map(str::to_owned),
            key_check: self.key_check.clone(),
            record: record.clone(),
            line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let h = ChainHash([0xab; 32]);
        assert_eq!(ChainHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(ChainHash::from_hex(&h.to_hex().to_uppercase()), None);
        assert_eq!(ChainHash::from_hex("00"), None);
    }

    /// The obvious decoder: 64 lowercase hex digits, one `match` per digit.
    fn reference_from_hex(b: &[u8]) -> Option<ChainHash> {
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            *o = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Some(ChainHash(out))
    }

    #[test]
    fn hex_decoder_agrees_with_the_reference_on_every_byte_at_every_position() {
        let h = ChainHash(std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5a));
        let hex = h.to_hex().into_bytes();
        assert_eq!(ChainHash::from_hex_bytes(&hex), Some(h));
        for pos in 0..64 {
            for byte in 0..=255u8 {
                let mut b = hex.clone();
                b[pos] = byte;
                assert_eq!(
                    ChainHash::from_hex_bytes(&b),
                    reference_from_hex(&b),
                    "byte {byte:#04x} at {pos}"
                );
            }
        }
        for len in [0, 1, 62, 63, 65, 66, 128] {
            let b = vec![b'a'; len];
            assert_eq!(ChainHash::from_hex_bytes(&b), None, "length {len}");
        }
    }

    fn stepped(a: &[u8], b: &[u8]) -> [u8; 32] {
        SteppedSha256::new(a, b).finish()
    }

    #[test]
    fn stepped_sha256_equals_sha256_at_every_split_and_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..200 {
            let want = Sha256::digest(&data[..len]);
            for cut in 0..=len {
                let (a, b) = data[..len].split_at(cut);
                assert_eq!(stepped(a, b)[..], want[..], "len {len} cut {cut}");
            }
        }
        // Stepping one block at a time reports completion exactly once at the end.
        let mut h = SteppedSha256::new(&data[..100], &data[100..]);
        let mut steps = 1;
        while !h.step() {
            steps += 1;
        }
        assert_eq!(steps, 300usize.div_ceil(64) + usize::from(300 % 64 >= 56));
        assert!(h.step());
        assert_eq!(h.finish()[..], Sha256::digest(&data)[..]);
    }

    proptest::proptest! {
        #[test]
        fn stepped_sha256_equals_sha256(
            a in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
        ) {
            let whole: Vec<u8> = a.iter().chain(&b).copied().collect();
            proptest::prop_assert_eq!(&stepped(&a, &b)[..], &Sha256::digest(&whole)[..]);
        }

        #[test]
        fn hex_decoder_agrees_with_the_reference(
            hex in "[0-9a-f]{64}",
            edits in proptest::collection::vec((0usize..64, proptest::prelude::any::<u8>()), 0..3),
        ) {
            let mut b = hex.into_bytes();
            for (at, byte) in edits {
                b[at] = byte;
            }
            proptest::prop_assert_eq!(ChainHash::from_hex_bytes(&b), reference_from_hex(&b));
        }
    }

    #[test]
    fn key_validation_and_file_format() {
        assert!(AuditKey::new("k", vec![1; 15]).is_err());
        assert!(AuditKey::new("has space", vec![1; 16]).is_err());
        let k = AuditKey::new("k1", vec![7; 32]).unwrap();
        let back = AuditKey::from_json(&k.to_json(), "test").unwrap();
        assert_eq!(back.id(), "k1");
        assert_eq!(back.key_check(), k.key_check());
        assert_eq!(k.key_check().len(), 16);
        assert!(!format!("{k:?}").contains("0707"));
        let err = AuditKey::from_json(r#"{"keyId":"x","secret":"zz"}"#, "f.json").unwrap_err();
        assert!(err.to_string().contains("f.json"), "{err}");
    }

    #[test]
    fn key_file_errors_never_quote_the_secret() {
        // A secret written as a JSON number, a hex string with one bad digit, a secret
        // under a misspelt field: none of these may end up in an error message (logs).
        let secret = "1234567898765432";
        for text in [
            format!(r#"{{"keyId":"k","secret":{secret}}}"#),
            format!(r#"{{"keyId":"k","secret":"{secret}x"}}"#),
            format!(r#"{{"keyId":"k","secret":["{secret}"]}}"#),
            format!(r#"{{"keyId":"k","Secret":"{secret}"}}"#),
            format!(r#"{{"keyId":"k","secret":"{secret}""#),
            format!(r#"["{secret}"]"#),
        ] {
            let err = AuditKey::from_json(&text, "k.json")
                .unwrap_err()
                .to_string();
            assert!(err.contains("k.json"), "{err}");
            assert!(!err.contains("12345678"), "secret in error message: {err}");
        }
        let err = AuditKey::from_json(r#"{"secret":"00112233445566778899aabbccddeeff"}"#, "k")
            .unwrap_err();
        assert!(err.to_string().contains("keyId"), "{err}");
        let err = AuditKey::from_json(r#"{"keyId":7,"secret":"00"}"#, "k").unwrap_err();
        assert!(err.to_string().contains("keyId"), "{err}");
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2 uses a 4-byte key; check the MAC primitive through digest_parts
        // with a long key instead (test case 6: 131-byte key).
        let key = AuditKey::new("t", vec![0xaa; 131]).unwrap();
        let h = digest_parts(
            Some(&key),
            &[
                b"Test Using Larger Than Block-Size Key - ",
                b"Hash Key First",
            ],
        );
        assert_eq!(
            h.to_hex(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert!(verify_parts(
            Some(&key),
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
            &h
        ));
    }
}
