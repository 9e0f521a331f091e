//! `kubesafe sign` and `kubesafe verify`: signed action envelopes from the command line.
//!
//! ```text
//! kubesafe sign   --key-file F --kid K [--ttl 300s] [--token] ACTION.json
//! kubesafe verify --key-file F --kid K ENVELOPE.json        # JSON or ks1. token
//! kubesafe verify --legacy-hex SIG --key-file F BODY.json   # hex HMAC over the exact bytes
//! ```
//!
//! `verify` exits 0 and prints the action (canonical JSON) on stdout, or exits 1 and prints
//! the canonical error code (`kubesafe: error: UNAUTHORIZED: ...`; with `--json` also
//! `{"code": ...}` on stdout). Usage, file and key errors exit 2. Replay protection lasts
//! for one process: a single `verify` run cannot know what an earlier run accepted (a
//! server keeps one `ReplayStore` for all requests).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kubesafe_signing::admission::AdmissionError;
use kubesafe_signing::legacy::LegacyVerifier;
use kubesafe_signing::{
    Envelope, InMemoryReplayStore, KeyRing, LegacySecret, Limits, Nonce, Secret, Verifier,
};

/// Where the secret comes from (exactly one of the two).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct KeySource {
    /// File holding the secret as raw bytes (one trailing newline is ignored; at least 32
    /// bytes).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Environment variable holding the secret: `base64:<base64>`, `hex:<hex>`, or raw.
    #[arg(long, value_name = "VAR")]
    key_env: Option<String>,
}

/// Sign an action into an envelope (HMAC-SHA256 over RFC 8785 canonical JSON).
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    #[command(flatten)]
    key: KeySource,
    /// Key id recorded in the envelope.
    #[arg(long)]
    kid: String,
    /// Lifetime of the envelope (`300s`, `5m`, `1h`, or plain seconds).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    ttl: Duration,
    /// Print the compact token (`ks1.` + base64url) instead of JSON.
    #[arg(long)]
    token: bool,
    /// Issue time in Unix seconds instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// The action (any JSON), `-` for standard input.
    action: PathBuf,
}

/// Verify an envelope (or, with --legacy-hex, a legacy hex signature) and print the action.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    key: KeySource,
    /// Key id of the secret (envelopes signed with another kid are refused).
    #[arg(
        long,
        required_unless_present = "legacy_hex",
        conflicts_with = "legacy_hex"
    )]
    kid: Option<String>,
    /// Legacy mode: the hex HMAC-SHA256 (optionally `sha256=`-prefixed) of the exact bytes
    /// of the input file. No expiry and no replay protection: migrate clients to envelopes.
    #[arg(long, value_name = "SIG")]
    legacy_hex: Option<String>,
    /// Legacy mode: accept a secret shorter than 32 bytes (with a warning).
    #[arg(long, requires = "legacy_hex")]
    allow_short_legacy_key: bool,
    /// Clock-skew allowance.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    skew: Duration,
    /// Longest accepted envelope lifetime (exp - iat).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    max_ttl: Duration,
    /// Verification time in Unix seconds instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
    /// On rejection, also print `{"code": ..., "message": ...}` on stdout.
    #[arg(long)]
    json: bool,
    /// The envelope (JSON or token) or, in legacy mode, the body; `-` for standard input.
    input: PathBuf,
}

fn error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("kubesafe: error: {message}");
    ExitCode::from(2)
}

/// Parses `300`, `300s`, `5m`, `1h`, `2d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 300s, 5m, 1h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use s, m, h or d)"
            ));
        }
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn read_input(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let limit = limit as u64 + 1;
    let result = if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    result.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(bytes)
}

fn load_secret(key: &KeySource) -> Result<Secret, String> {
    match (&key.key_file, &key.key_env) {
        (Some(path), _) => Secret::from_file(path),
        (None, Some(var)) => Secret::from_env(var),
        (None, None) => return Err("one of --key-file or --key-env is required".to_owned()),
    }
    .map_err(|e| e.to_string())
}

pub(crate) fn run_sign(args: SignArgs) -> ExitCode {
    let limits = Limits::default();
    let secret = match load_secret(&args.key) {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    let mut ring = KeyRing::new();
    if let Err(e) = ring.insert_active(&args.kid, secret) {
        return error(format!("--kid: {e}"));
    }
    let bytes = match read_input(&args.action, limits.max_bytes()) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let action = match kubesafe_signing::json::parse(&bytes, &limits) {
        Ok(v) => v,
        Err(e) => return error(format!("{}: {e}", args.action.display())),
    };
    let signed = match args.now {
        None => ring.sign(&action, args.ttl),
        Some(now) => match Nonce::random() {
            Ok(nonce) => ring.sign_at(&action, now, args.ttl, nonce),
            Err(e) => return error(e),
        },
    };
    match signed {
        Ok(envelope) => {
            if args.token {
                println!("{}", envelope.to_token());
            } else {
                println!("{}", envelope.to_json());
            }
            ExitCode::SUCCESS
        }
        Err(e) => error(format!("{}: {e}", args.action.display())),
    }
}

fn reject(err: AdmissionError, json: bool) -> ExitCode {
    if json && let Ok(text) = serde_json::to_string(&err) {
        println!("{text}");
    }
    eprintln!("kubesafe: error: {}: {}", err.code, err.message);
    ExitCode::from(1)
}

pub(crate) fn run_verify(args: VerifyArgs) -> ExitCode {
    let limits = Limits::default();
    let input = match read_input(&args.input, limits.max_bytes()) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let result = if let Some(signature) = &args.legacy_hex {
        let secret = match (
            &args.key.key_file,
            &args.key.key_env,
            args.allow_short_legacy_key,
        ) {
            (Some(path), _, false) => LegacySecret::from_file(path),
            (Some(path), _, true) => LegacySecret::from_file_allow_short(path),
            (None, Some(var), false) => LegacySecret::from_env(var),
            (None, Some(var), true) => LegacySecret::from_env_allow_short(var),
            (None, None, _) => return error("one of --key-file or --key-env is required"),
        };
        let secret = match secret {
            Ok(s) => s,
            Err(e) => return error(e),
        };
        LegacyVerifier::new("legacy", secret)
            .with_limits(limits)
            .verify(&input, signature.trim())
    } else {
        let secret = match load_secret(&args.key) {
            Ok(s) => s,
            Err(e) => return error(e),
        };
        let mut keys = KeyRing::new();
        if let Err(e) = keys.insert_verify_only(args.kid.as_deref().unwrap_or_default(), secret) {
            return error(format!("--kid: {e}"));
        }
        let verifier = Verifier::new(keys, InMemoryReplayStore::default())
            .with_skew(args.skew)
            .with_max_ttl(args.max_ttl)
            .with_limits(limits);
        match Envelope::parse(&input, &limits) {
            Err(e) => Err(e.into()),
            Ok(envelope) => match args.now {
                Some(now) => verifier.verify_at(envelope, now),
                None => verifier.verify(envelope),
            },
        }
    };
    match result {
        Ok(verified) => {
            let action = verified.into_action();
            match kubesafe_signing::jcs::Canonicalizer::rfc8785().to_string(&action) {
                Ok(text) => println!("{text}"),
                Err(e) => return error(e),
            }
            ExitCode::SUCCESS
        }
        Err(rejection) => reject(AdmissionError::from(rejection), args.json),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("300s"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
