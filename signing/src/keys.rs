//! Secrets and the [`KeyRing`].
//!
//! A [`Secret`] is at least [`MIN_SECRET_LEN`] = 32 bytes. RFC 2104 §3 calls HMAC keys
//! shorter than the hash output (32 bytes for SHA-256) "strongly discouraged" because they
//! lower the security of the MAC below that of the hash, and RFC 7518 §3.2 makes a key of at
//! least the hash size a MUST for `HS256`. Generate one with [`Secret::generate`] or
//! `head -c 32 /dev/urandom > key`.
//!
//! Secret bytes are zeroized on drop (also the keyed HMAC state derived from them) and never
//! printed: `Debug` shows only the length.
//!
//! # Loading
//!
//! * [`Secret::from_file`]: the file holds the secret as raw bytes; one trailing `\n` is
//!   ignored (so `echo`-written files work), nothing else is trimmed. A file readable by
//!   group or others is loaded but logged as a warning.
//! * [`Secret::from_env`]: the variable holds `base64:<standard base64>`, `hex:<hex>`, or
//!   otherwise the raw bytes of the value. (A raw secret that itself begins with `base64:`
//!   or `hex:` must therefore be given encoded.) The process environment itself cannot be
//!   wiped; prefer files for long-running processes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Minimum length of an HMAC-SHA256 secret: the hash output size (RFC 2104 §3, RFC 7518 §3.2).
pub const MIN_SECRET_LEN: usize = 32;

/// Maximum length of a secret (a longer one is a mistake, such as the wrong file).
pub const MAX_SECRET_LEN: usize = 4096;

pub(crate) type HmacSha256 = Hmac<Sha256>;

// The keyed HMAC state (the SHA-256 states after absorbing the inner and outer padded key)
// is secret-equivalent. `Hmac<Sha256>` holds it in two `Sha256VarCore`s, which wipe
// themselves on drop with `sha2/zeroize`; fail the build if that ever stops holding.
const _: fn() = || {
    fn wiped_on_drop<T: ZeroizeOnDrop>() {}
    wiped_on_drop::<sha2::block_api::Sha256VarCore>();
};

/// Where a secret came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// Given as bytes in code.
    Bytes,
    /// Read from this file.
    File(PathBuf),
    /// Read from this environment variable.
    Env(String),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Bytes => f.write_str("secret bytes"),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// Why a key could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The secret is shorter than the minimum.
    #[error(
        "{source_}: secret is {len} bytes, the minimum is {min} (RFC 2104 §3: at least the 32-byte SHA-256 output)"
    )]
    TooShort {
        /// Where it came from.
        source_: KeySource,
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The secret is longer than [`MAX_SECRET_LEN`].
    #[error("{source_}: secret is longer than {max} bytes")]
    TooLong {
        /// Where it came from.
        source_: KeySource,
        /// The maximum.
        max: usize,
    },
    /// The file could not be read.
    #[error("cannot read key file {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("environment variable {var} is not set")]
    EnvMissing {
        /// Its name.
        var: String,
    },
    /// The environment variable's `base64:`/`hex:` payload does not decode.
    #[error("environment variable {var}: {reason}")]
    Encoding {
        /// Its name.
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// A key id is empty, too long or has characters outside `[A-Za-z0-9._:-]`.
    #[error("invalid key id {kid:?}: {reason}")]
    InvalidKid {
        /// The key id.
        kid: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The key ring already has this key id (a kid names one secret for its whole life).
    #[error("key id {kid:?} is already in the key ring")]
    DuplicateKid {
        /// The key id.
        kid: String,
    },
    /// The key id is not in the key ring.
    #[error("key id {kid:?} is not in the key ring")]
    UnknownKid {
        /// The key id.
        kid: String,
    },
    /// Signing was asked of a key ring without an active key.
    #[error("the key ring has no active signing key")]
    NoActiveKey,
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}

/// An HMAC secret of at least [`MIN_SECRET_LEN`] bytes, wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret {
    bytes: Vec<u8>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret([REDACTED; {} bytes])", self.bytes.len())
    }
}

impl Secret {
    /// Wraps `bytes` (taking ownership, so no copy is left behind).
    ///
    /// # Errors
    /// [`KeyError::TooShort`] below 32 bytes, [`KeyError::TooLong`] above
    /// [`MAX_SECRET_LEN`]. The bytes are wiped in both cases.
    pub fn new(bytes: Vec<u8>) -> Result<Self, KeyError> {
        Self::checked(bytes, KeySource::Bytes, MIN_SECRET_LEN)
    }

    fn checked(bytes: Vec<u8>, source: KeySource, min: usize) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(bytes);
        if bytes.len() < min {
            return Err(KeyError::TooShort {
                source_: source,
                len: bytes.len(),
                min,
            });
        }
        if bytes.len() > MAX_SECRET_LEN {
            return Err(KeyError::TooLong {
                source_: source,
                max: MAX_SECRET_LEN,
            });
        }
        let mut bytes = bytes;
        Ok(Secret {
            bytes: std::mem::take(&mut *bytes),
        })
    }

    /// 32 fresh random bytes from the operating system.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = vec![0u8; MIN_SECRET_LEN];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Self::new(bytes)
    }

    /// Reads a secret stored as raw bytes in `path`; one trailing `\n` is ignored.
    ///
    /// # Errors
    /// [`KeyError::Io`] if the file cannot be read, [`KeyError::TooShort`] /
    /// [`KeyError::TooLong`] for a wrong size.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let (bytes, source) = read_key_file(path.as_ref())?;
        Self::checked(bytes, source, MIN_SECRET_LEN)
    }

    /// Reads a secret from the environment variable `var` (`base64:…`, `hex:…` or raw).
    ///
    /// # Errors
    /// [`KeyError::EnvMissing`], [`KeyError::Encoding`], or a size error.
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        let bytes = read_key_env(var)?;
        Self::checked(bytes, KeySource::Env(var.to_owned()), MIN_SECRET_LEN)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always `false`: a secret has at least 32 bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

/// A secret for the opt-in legacy mode ([`crate::legacy`]), whose clients chose their own
/// secrets. It enforces the same 32-byte minimum as [`Secret`] unless the caller opts out
/// explicitly with [`LegacySecret::new_allow_short`] / [`LegacySecret::from_file_allow_short`]
/// (GitHub, for one, accepts any webhook secret). Wiped on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LegacySecret {
    bytes: Vec<u8>,
}

impl fmt::Debug for LegacySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LegacySecret([REDACTED; {} bytes])", self.bytes.len())
    }
}

impl From<Secret> for LegacySecret {
    fn from(mut secret: Secret) -> Self {
        LegacySecret {
            bytes: std::mem::take(&mut secret.bytes),
        }
    }
}

impl LegacySecret {
    /// Wraps `bytes`, requiring at least [`MIN_SECRET_LEN`] bytes.
    ///
    /// # Errors
    /// As [`Secret::new`].
    pub fn new(bytes: Vec<u8>) -> Result<Self, KeyError> {
        Secret::checked(bytes, KeySource::Bytes, MIN_SECRET_LEN).map(Self::from)
    }

    /// Wraps `bytes` of any non-zero length, logging a warning when shorter than 32 bytes.
    ///
    /// # Errors
    /// [`KeyError::TooShort`] for an empty secret, [`KeyError::TooLong`].
    pub fn new_allow_short(bytes: Vec<u8>) -> Result<Self, KeyError> {
        let s = Secret::checked(bytes, KeySource::Bytes, 1)?;
        warn_short(s.len(), &KeySource::Bytes);
        Ok(Self::from(s))
    }

    /// Reads a legacy secret from a key file (format as [`Secret::from_file`]), requiring
    /// 32 bytes.
    ///
    /// # Errors
    /// As [`Secret::from_file`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        Secret::from_file(path).map(Self::from)
    }

    /// Reads a legacy secret of any non-zero length from a key file.
    ///
    /// # Errors
    /// As [`Secret::from_file`], with a minimum of one byte.
    pub fn from_file_allow_short(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let (bytes, source) = read_key_file(path.as_ref())?;
        let s = Secret::checked(bytes, source.clone(), 1)?;
        warn_short(s.len(), &source);
        Ok(Self::from(s))
    }

    /// Reads a legacy secret from an environment variable (format as [`Secret::from_env`]),
    /// requiring 32 bytes.
    ///
    /// # Errors
    /// As [`Secret::from_env`].
    pub fn from_env(var: &str) -> Result<Self, KeyError> {
        Secret::from_env(var).map(Self::from)
    }

    /// Reads a legacy secret of any non-zero length from an environment variable.
    ///
    /// # Errors
    /// As [`Secret::from_env`], with a minimum of one byte.
    pub fn from_env_allow_short(var: &str) -> Result<Self, KeyError> {
        let source = KeySource::Env(var.to_owned());
        let s = Secret::checked(read_key_env(var)?, source.clone(), 1)?;
        warn_short(s.len(), &source);
        Ok(Self::from(s))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

fn warn_short(len: usize, source: &KeySource) {
    if len < MIN_SECRET_LEN {
        tracing::warn!(
            %source,
            len,
            "legacy secret is shorter than {MIN_SECRET_LEN} bytes; rotate it to a longer one"
        );
    }
}

fn read_key_file(path: &Path) -> Result<(Vec<u8>, KeySource), KeyError> {
    let io = |error| KeyError::Io {
        path: path.to_owned(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o7777),
                "key file is readable by group or others; chmod 600 it"
            );
        }
    }
    let source = KeySource::File(path.to_owned());
    let limit = MAX_SECRET_LEN as u64 + 2;
    if meta.len() > limit {
        return Err(KeyError::TooLong {
            source_: source,
            max: MAX_SECRET_LEN,
        });
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_SECRET_LEN + 2));
    file.take(limit).read_to_end(&mut bytes).map_err(io)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok((std::mem::take(&mut *bytes), source))
}

fn read_key_env(var: &str) -> Result<Vec<u8>, KeyError> {
    let value = std::env::var_os(var).ok_or_else(|| KeyError::EnvMissing {
        var: var.to_owned(),
    })?;
    #[cfg(unix)]
    let raw = Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(value));
    #[cfg(not(unix))]
    let raw = Zeroizing::new(value.to_string_lossy().into_owned().into_bytes());
    decode_env_value(var, &raw)
}

/// Decodes an environment value: `base64:` + standard base64, `hex:` + hex, else raw bytes.
fn decode_env_value(var: &str, raw: &[u8]) -> Result<Vec<u8>, KeyError> {
    let encoding = |reason: String| KeyError::Encoding {
        var: var.to_owned(),
        reason,
    };
    if let Some(b64) = raw.strip_prefix(b"base64:") {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| encoding(format!("invalid base64 after `base64:`: {}", redacted(&e))))
    } else if let Some(hex) = raw.strip_prefix(b"hex:") {
        decode_hex(hex).ok_or_else(|| encoding("invalid hex after `hex:`".to_owned()))
    } else {
        Ok(raw.to_vec())
    }
}

/// A base64 error without the offending byte (`DecodeError`'s `Display` prints it, and it
/// is a byte of the secret).
fn redacted(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("invalid character at offset {offset}")
        }
        base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("invalid last character at offset {offset}")
        }
        base64::DecodeError::InvalidPadding => "invalid padding".to_owned(),
    }
}

/// Decodes an even-length hex string (either case).
pub(crate) fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    // Allocate the exact size up front: no reallocation leaves a stray copy of a secret.
    // Zeroizing: a partial result is wiped if a later digit is invalid.
    let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
    for pair in hex.chunks_exact(2) {
        match pair {
            [h, l] => out.push(nibble(*h)? << 4 | nibble(*l)?),
            _ => return None,
        }
    }
    Some(std::mem::take(&mut *out))
}

/// Checks a key id: 1–64 characters of `[A-Za-z0-9._:-]`.
///
/// # Errors
/// [`KeyError::InvalidKid`].
pub fn validate_kid(kid: &str) -> Result<(), KeyError> {
    let bad = |reason| {
        Err(KeyError::InvalidKid {
            kid: kid.to_owned(),
            reason,
        })
    };
    if kid.is_empty() {
        return bad("empty");
    }
    if kid.len() > 64 {
        return bad("longer than 64 characters");
    }
    if !kid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return bad("only A-Z a-z 0-9 . _ : - are allowed");
    }
    Ok(())
}

/// One key: the secret and the HMAC state keyed with it (computing the inner and outer
/// padded key blocks once instead of on every MAC).
#[derive(Clone)]
pub(crate) struct Key {
    secret: Secret,
    keyed: HmacSha256,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("secret", &self.secret).finish()
    }
}

impl Key {
    pub(crate) fn new(secret: Secret) -> Self {
        let keyed = keyed_hmac(secret.expose());
        Key { secret, keyed }
    }

    /// A fresh HMAC instance keyed with this secret.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }
}

/// An HMAC-SHA256 instance keyed with `key` (HMAC accepts any key length).
pub(crate) fn keyed_hmac(key: &[u8]) -> HmacSha256 {
    // `new_from_slice` only fails for MACs with fixed key sizes; HMAC hashes or pads any
    // key. Fall back to an impossible-to-verify state rather than panicking.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => HmacSha256::new(&Default::default()),
    }
}

/// The keys a process signs and verifies with: key id → secret, with at most one **active**
/// key used for signing and any number of verify-only keys.
///
/// Rotation without downtime: add the new key as verify-only on every verifier, then make it
/// active on the signers, then — after the longest envelope lifetime has passed — remove the
/// old key.
///
/// ```
/// use kubesafe_signing::{KeyRing, Secret};
/// let mut ring = KeyRing::new();
/// ring.insert_active("2024-01", Secret::new(vec![7; 32])?)?;
/// ring.insert_verify_only("2023-07", Secret::new(vec![9; 32])?)?;
/// assert_eq!(ring.active_kid(), Some("2024-01"));
/// assert!(format!("{ring:?}").contains("REDACTED"));
/// # Ok::<(), kubesafe_signing::KeyError>(())
/// ```
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: BTreeMap<String, Key>,
    active: Option<String>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("keys", &self.keys)
            .finish()
    }
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// Adds `secret` under `kid` and makes it the signing key; the previously active key
    /// stays as a verify-only key.
    ///
    /// # Errors
    /// [`KeyError::InvalidKid`], [`KeyError::DuplicateKid`].
    pub fn insert_active(&mut self, kid: &str, secret: Secret) -> Result<(), KeyError> {
        self.insert_verify_only(kid, secret)?;
        self.active = Some(kid.to_owned());
        Ok(())
    }

    /// Adds `secret` under `kid` for verification only.
    ///
    /// # Errors
    /// [`KeyError::InvalidKid`], [`KeyError::DuplicateKid`].
    pub fn insert_verify_only(&mut self, kid: &str, secret: Secret) -> Result<(), KeyError> {
        validate_kid(kid)?;
        if self.keys.contains_key(kid) {
            return Err(KeyError::DuplicateKid {
                kid: kid.to_owned(),
            });
        }
        self.keys.insert(kid.to_owned(), Key::new(secret));
        Ok(())
    }

    /// Makes the key `kid` (already in the ring) the signing key.
    ///
    /// # Errors
    /// [`KeyError::UnknownKid`].
    pub fn set_active(&mut self, kid: &str) -> Result<(), KeyError> {
        if !self.keys.contains_key(kid) {
            return Err(KeyError::UnknownKid {
                kid: kid.to_owned(),
            });
        }
        self.active = Some(kid.to_owned());
        Ok(())
    }

    /// Removes `kid` (its secret is wiped); envelopes signed with it no longer verify.
    /// Returns whether it was present. Removing the active key leaves no active key.
    pub fn remove(&mut self, kid: &str) -> bool {
        if self.active.as_deref() == Some(kid) {
            self.active = None;
        }
        self.keys.remove(kid).is_some()
    }

    /// Whether `kid` is in the ring.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The signing key's id.
    pub fn active_kid(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// All key ids, in byte order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid)
    }

    pub(crate) fn active(&self) -> Result<(&str, &Key), KeyError> {
        let kid = self.active.as_deref().ok_or(KeyError::NoActiveKey)?;
        let key = self.keys.get(kid).ok_or(KeyError::NoActiveKey)?;
        Ok((kid, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_length_is_enforced() {
        assert!(matches!(
            Secret::new(vec![1; 31]),
            Err(KeyError::TooShort {
                len: 31,
                min: 32,
                ..
            })
        ));
        assert!(Secret::new(vec![1; 32]).is_ok());
        assert!(matches!(
            Secret::new(vec![1; MAX_SECRET_LEN + 1]),
            Err(KeyError::TooLong { .. })
        ));
        assert!(LegacySecret::new(b"It's a Secret to Everybody".to_vec()).is_err());
        assert!(LegacySecret::new_allow_short(b"It's a Secret to Everybody".to_vec()).is_ok());
        assert!(LegacySecret::new_allow_short(Vec::new()).is_err());
    }

    #[test]
    fn debug_never_prints_secret_bytes() {
        let secret = Secret::new(b"super-secret-value-0123456789abcdef".to_vec()).unwrap();
        let mut ring = KeyRing::new();
        ring.insert_active("k1", secret.clone()).unwrap();
        for text in [
            format!("{secret:?}"),
            format!("{ring:?}"),
            format!("{ring:#?}"),
            format!("{:?}", LegacySecret::from(secret)),
        ] {
            assert!(!text.contains("super-secret"), "{text}");
            assert!(!text.contains("115, 117"), "{text}"); // "su" as bytes
            assert!(text.contains("REDACTED"), "{text}");
        }
    }

    #[test]
    fn kid_rules() {
        assert!(validate_kid("2024-01_a:b.c").is_ok());
        for bad in ["", "a b", "k\n", "é", &"x".repeat(65)] {
            assert!(validate_kid(bad).is_err(), "{bad:?}");
        }
        let mut ring = KeyRing::new();
        ring.insert_verify_only("a", Secret::new(vec![1; 32]).unwrap())
            .unwrap();
        assert!(matches!(
            ring.insert_active("a", Secret::new(vec![2; 32]).unwrap()),
            Err(KeyError::DuplicateKid { .. })
        ));
        assert!(ring.active().is_err());
        ring.set_active("a").unwrap();
        assert_eq!(ring.active_kid(), Some("a"));
        assert!(ring.remove("a"));
        assert_eq!(ring.active_kid(), None);
        assert!(matches!(
            ring.set_active("a"),
            Err(KeyError::UnknownKid { .. })
        ));
    }

    #[test]
    fn key_file_trailing_newline_and_errors() {
        let dir =
            std::env::temp_dir().join(format!("kubesafe-signing-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = [b'k'; 32];
        let p = dir.join("key");
        std::fs::write(&p, [&key[..], b"\n"].concat()).unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), &key);
        // Only one newline is removed.
        std::fs::write(&p, [&key[..31], b"\n\n"].concat()).unwrap();
        assert_eq!(
            Secret::from_file(&p).unwrap().expose(),
            [&key[..31], b"\n"].concat()
        );
        std::fs::write(&p, &key[..31]).unwrap();
        let err = Secret::from_file(&p).unwrap_err();
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        let missing = dir.join("missing");
        let err = Secret::from_file(&missing).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }));
        assert!(err.to_string().contains("missing"));
        std::fs::write(&p, vec![b'x'; MAX_SECRET_LEN + 10]).unwrap();
        assert!(matches!(
            Secret::from_file(&p),
            Err(KeyError::TooLong { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_value_encodings() {
        assert_eq!(
            decode_env_value("V", b"base64:AAEC").unwrap(),
            vec![0, 1, 2]
        );
        assert_eq!(decode_env_value("V", b"hex:0a0B").unwrap(), vec![10, 11]);
        assert_eq!(decode_env_value("V", b"plain").unwrap(), b"plain".to_vec());
        let err = decode_env_value("MY_KEY", b"base64:!!").unwrap_err();
        assert!(err.to_string().contains("MY_KEY"), "{err}");
        assert!(decode_env_value("V", b"hex:0g").is_err());
        // No byte of the (malformed) secret appears in the message: `~` is 126, `B` 66.
        for (value, byte) in [(&b"base64:AAA~"[..], "126"), (b"base64:AAB=", "66")] {
            let err = decode_env_value("MY_KEY", value).unwrap_err().to_string();
            assert!(err.contains("MY_KEY") && err.contains("offset"), "{err}");
            assert!(!err.contains(byte) && !err.contains('~'), "{err}");
        }
        assert!(matches!(
            Secret::from_env("KUBESAFE_SIGNING_TEST_SURELY_UNSET_VARIABLE"),
            Err(KeyError::EnvMissing { .. })
        ));
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex(b"00ffAb"), Some(vec![0, 255, 0xab]));
        assert_eq!(decode_hex(b"0"), None);
        assert_eq!(decode_hex(b"zz"), None);
    }
}
