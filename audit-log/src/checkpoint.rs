//! Signed checkpoints: `(seq, hash)` of a chain head, stored away from the log, so
//! that cutting off the log's tail (or rewriting it) is detected.

use std::io::Write;
use std::path::Path;

use hmac::Mac;
use jiff::Timestamp;
use serde_json::json;

use crate::canon;
use crate::chain::{self, AuditKey, ChainHash, ChainHead, KeyRing};
use crate::error::{Error, Result};

/// The algorithm name of HMAC-SHA256 checkpoint signatures.
pub const HMAC_SHA256: &str = "hmac-sha256";

/// Signs checkpoint payloads. Implemented by [`AuditKey`] (HMAC-SHA256); implement it
/// for an HSM, KMS or asymmetric key to let checkpoints be verified by parties that
/// cannot write them.
pub trait CheckpointSigner {
    /// The signature algorithm name stored in the checkpoint (e.g. `"hmac-sha256"`).
    fn algorithm(&self) -> &str;
    /// The key id stored in the checkpoint.
    fn key_id(&self) -> &str;
    /// Signs the canonical payload bytes.
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>>;
}

/// Verifies checkpoint signatures. Implemented by [`AuditKey`] and [`KeyRing`].
pub trait CheckpointVerifier {
    /// Checks `signature` over `payload`; an error says why it does not verify.
    fn verify(&self, algorithm: &str, key_id: &str, payload: &[u8], signature: &[u8])
    -> Result<()>;
}

impl CheckpointSigner for AuditKey {
    fn algorithm(&self) -> &str {
        HMAC_SHA256
    }
    fn key_id(&self) -> &str {
        self.id()
    }
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>> {
        Ok(chain::digest_parts(Some(self), &[payload]).0.to_vec())
    }
}

impl CheckpointVerifier for AuditKey {
    fn verify(
        &self,
        algorithm: &str,
        key_id: &str,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        if algorithm != HMAC_SHA256 {
            return Err(sig_err(format!("unsupported algorithm {algorithm:?}")));
        }
        if key_id != self.id() {
            return Err(sig_err(format!(
                "signed with key id {key_id:?}, verifying with key id {:?}",
                self.id()
            )));
        }
        let mut mac = self.mac();
        mac.update(payload);
        mac.verify_slice(signature).map_err(|_| {
            sig_err("signature does not verify (wrong key or edited checkpoint)".into())
        })
    }
}

impl CheckpointVerifier for KeyRing {
    fn verify(
        &self,
        algorithm: &str,
        key_id: &str,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<()> {
        match self.get(key_id) {
            Some(k) => k.verify(algorithm, key_id, payload, signature),
            None => Err(sig_err(format!("no key with id {key_id:?} supplied"))),
        }
    }
}

fn sig_err(message: String) -> Error {
    Error::Checkpoint {
        what: "signature".into(),
        message,
    }
}

/// A signed checkpoint of a chain head.
///
/// Stored as a small JSON file:
/// `{"alg":"hmac-sha256","createdAt":"…","hash":"…","keyId":"…","log":"…","seq":42,"signature":"<hex>"}`.
/// The signature covers the RFC 8785 canonical JSON of all other fields plus
/// `"type":"kubesafe-audit-checkpoint"` and `"v":1` (so a checkpoint signature can
/// never be confused with a record MAC made with the same key: records have no
/// top-level `type` member).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct Checkpoint {
    /// The head's sequence number.
    pub seq: u64,
    /// The head's hash.
    pub hash: ChainHash,
    /// When the checkpoint was made.
    pub created_at: Timestamp,
    /// Signature algorithm.
    pub alg: String,
    /// Signing key id.
    pub key_id: String,
    /// Informational name of the log (not interpreted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Signature, hex.
    pub signature: String,
}

impl Checkpoint {
    /// Signs a checkpoint of `head`.
    pub fn sign(
        head: ChainHead,
        log: Option<String>,
        signer: &dyn CheckpointSigner,
    ) -> Result<Self> {
        let mut cp = Checkpoint {
            seq: head.seq,
            hash: head.hash,
            created_at: Timestamp::now(),
            alg: signer.algorithm().to_owned(),
            key_id: signer.key_id().to_owned(),
            log,
            signature: String::new(),
        };
        let sig = signer.sign(&cp.payload())?;
        chain::push_hex(&sig, &mut cp.signature);
        Ok(cp)
    }

    /// The canonical bytes the signature covers.
    pub fn payload(&self) -> Vec<u8> {
        let mut v = json!({
            "alg": self.alg,
            "createdAt": self.created_at.to_string(),
            "hash": self.hash.to_hex(),
            "keyId": self.key_id,
            "seq": self.seq,
            "type": "kubesafe-audit-checkpoint",
            "v": 1,
        });
        if let (Some(log), Some(obj)) = (&self.log, v.as_object_mut()) {
            obj.insert("log".into(), json!(log));
        }
        let mut out = Vec::new();
        canon::write_value(&v, &mut out);
        out
    }

    /// Checks the signature; only a verified checkpoint can be used by [`verify`](crate::verify).
    pub fn verify(&self, verifier: &dyn CheckpointVerifier) -> Result<VerifiedCheckpoint> {
        let sig = chain::decode_hex(&self.signature)
            .ok_or_else(|| sig_err("signature is not hex".into()))?;
        verifier.verify(&self.alg, &self.key_id, &self.payload(), &sig)?;
        Ok(VerifiedCheckpoint { cp: self.clone() })
    }

    /// The JSON file form.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses the JSON file form; `what` names the source in errors.
    pub fn from_json(text: &str, what: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Checkpoint {
            what: what.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads a checkpoint file.
    pub fn read_from(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read checkpoint", path, e))?;
        Checkpoint::from_json(&text, &path.display().to_string())
    }

    /// Writes the checkpoint file atomically (temporary file, fsync, rename, fsync of
    /// the directory).
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.to_json().as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io("write checkpoint", path, e)
        })
    }
}

/// A checkpoint whose signature has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    cp: Checkpoint,
}

impl VerifiedCheckpoint {
    /// The checkpointed seq.
    pub fn seq(&self) -> u64 {
        self.cp.seq
    }
    /// The checkpointed hash.
    pub fn hash(&self) -> ChainHash {
        self.cp.hash
    }
    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.cp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let key = AuditKey::new("cp", vec![3; 32]).unwrap();
        let head = ChainHead {
            seq: 42,
            hash: ChainHash([9; 32]),
        };
        let cp = Checkpoint::sign(head, Some("audit.jsonl".into()), &key).unwrap();
        let back = Checkpoint::from_json(&cp.to_json(), "t").unwrap();
        assert_eq!(back, cp);
        let v = back.verify(&key).unwrap();
        assert_eq!((v.seq(), v.hash()), (42, head.hash));

        let mut edited = cp.clone();
        edited.seq = 41;
        assert!(edited.verify(&key).is_err());
        let other = AuditKey::new("cp", vec![4; 32]).unwrap();
        assert!(cp.verify(&other).is_err());
        let ring = KeyRing::new().with(AuditKey::new("nope", vec![3; 32]).unwrap());
        let e = cp.verify(&ring).unwrap_err();
        assert!(e.to_string().contains("cp"), "{e}");
    }
}
