//! `kubesafe sign` / `kubesafe verify`, run as the built binary.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kubesafe");
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-cli";
const ACTION: &str = r#"{ "type": "scale_deployment", "namespace": "shop", "name": "web",
  "params": { "replicas": 3 }, "requested_by": "caf\u00e9" }"#;
const ACTION_CANONICAL: &str = r#"{"name":"web","namespace":"shop","params":{"replicas":3},"requested_by":"café","type":"scale_deployment"}"#;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sign-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kubesafe(args: &[&str]) -> Output {
    kubesafe_with(args, &[], None)
}

fn kubesafe_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn sign(dir: &Dir, key: &Path, extra: &[&str]) -> PathBuf {
    let action = dir.file("action.json", ACTION.as_bytes());
    let mut args = vec!["sign", "--key-file", p(key), "--kid", "k1"];
    args.extend_from_slice(extra);
    args.push(p(&action));
    let out = kubesafe(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    dir.file("envelope", &out.stdout)
}

#[test]
fn sign_then_verify_prints_the_action() {
    let dir = Dir::new("roundtrip");
    let key = dir.file("key", &[SECRET, b"\n"].concat());
    for form in [&[][..], &["--token"][..], &["--ttl", "10m"][..]] {
        let env = sign(&dir, &key, form);
        let text = std::fs::read_to_string(&env).unwrap();
        if form == ["--token"] {
            assert!(text.starts_with("ks1."), "{text}");
        } else {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["kid"], "k1");
            assert_eq!(v["alg"], "HS256");
            assert_eq!(v["v"], 1);
            let ttl = v["exp"].as_u64().unwrap() - v["iat"].as_u64().unwrap();
            assert_eq!(ttl, if form.is_empty() { 300 } else { 600 });
        }
        let out = kubesafe(&["verify", "--key-file", p(&key), "--kid", "k1", p(&env)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("{ACTION_CANONICAL}\n"));
    }
    // Standard input works for both commands.
    let out = kubesafe_with(
        &["sign", "--key-file", p(&key), "--kid", "k1", "-"],
        &[],
        Some(ACTION.as_bytes()),
    );
    assert!(out.status.success());
    let out = kubesafe_with(
        &["verify", "--key-file", p(&key), "--kid", "k1", "-"],
        &[],
        Some(&out.stdout),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn rejections_exit_1_with_the_code() {
    let dir = Dir::new("reject");
    let key = dir.file("key", SECRET);
    let env = sign(&dir, &key, &[]);
    let text = std::fs::read_to_string(&env).unwrap();

    let tampered = dir.file(
        "tampered",
        text.replace("\"replicas\":3", "\"replicas\":30").as_bytes(),
    );
    let out = kubesafe(&[
        "verify",
        "--json",
        "--key-file",
        p(&key),
        "--kid",
        "k1",
        p(&tampered),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("kubesafe: error: UNAUTHORIZED: MAC does not match"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["code"], "UNAUTHORIZED");

    let out = kubesafe(&["verify", "--key-file", p(&key), "--kid", "other", p(&env)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("UNAUTHORIZED: unknown key id \"k1\""),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    let other_key = dir.file("other-key", &[b'x'; 32]);
    let out = kubesafe(&[
        "verify",
        "--key-file",
        p(&other_key),
        "--kid",
        "k1",
        p(&env),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("UNAUTHORIZED"));

    let truncated = dir.file("truncated", &text.as_bytes()[..text.len() / 2]);
    let out = kubesafe(&[
        "verify",
        "--json",
        "--key-file",
        p(&key),
        "--kid",
        "k1",
        p(&truncated),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("SCHEMA_VALIDATION_FAILED"),
        "{}",
        stderr(&out)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["code"], "SCHEMA_VALIDATION_FAILED");

    let wrong_type = dir.file(
        "wrong-type",
        text.replace("\"v\":1", "\"v\":\"1\"").as_bytes(),
    );
    let out = kubesafe(&[
        "verify",
        "--key-file",
        p(&key),
        "--kid",
        "k1",
        p(&wrong_type),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("SCHEMA_VALIDATION_FAILED: field `v` must be an integer"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn expiry_and_clock() {
    let dir = Dir::new("expiry");
    let key = dir.file("key", SECRET);
    let env = sign(&dir, &key, &["--now", "1700000000", "--ttl", "60s"]);
    let at = |now: &str| {
        kubesafe(&[
            "verify",
            "--key-file",
            p(&key),
            "--kid",
            "k1",
            "--now",
            now,
            p(&env),
        ])
    };
    assert!(at("1700000030").status.success());
    // 60 s lifetime + 30 s default skew.
    assert!(at("1700000089").status.success());
    let out = at("1700000090");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("UNAUTHORIZED: envelope expired"),
        "{}",
        stderr(&out)
    );
    let out = at("1699999000");
    assert!(
        stderr(&out).contains("UNAUTHORIZED: envelope is not valid before"),
        "{}",
        stderr(&out)
    );
    // And against the real clock, a 2023 envelope has long expired.
    let out = kubesafe(&["verify", "--key-file", p(&key), "--kid", "k1", p(&env)]);
    assert_eq!(out.status.code(), Some(1));
    // A verifier with a shorter maximum lifetime refuses it.
    let out = kubesafe(&[
        "verify",
        "--key-file",
        p(&key),
        "--kid",
        "k1",
        "--now",
        "1700000001",
        "--max-ttl",
        "30s",
        p(&env),
    ]);
    assert!(
        stderr(&out).contains("lifetime 60 s exceeds the maximum of 30 s"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn key_errors_exit_2_and_name_the_source() {
    let dir = Dir::new("keys");
    let short = dir.file("short-key", b"only-20-bytes-long!!\n");
    let action = dir.file("action.json", ACTION.as_bytes());
    let out = kubesafe(&["sign", "--key-file", p(&short), "--kid", "k1", p(&action)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("short-key: secret is 20 bytes, the minimum is 32"),
        "{}",
        stderr(&out)
    );

    let missing = dir.0.join("missing-key");
    let out = kubesafe(&["sign", "--key-file", p(&missing), "--kid", "k1", p(&action)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing-key"));

    let key = dir.file("key", SECRET);
    let out = kubesafe(&[
        "sign",
        "--key-file",
        p(&key),
        "--kid",
        "bad kid",
        p(&action),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--kid"));

    let bad_action = dir.file("bad.json", b"{\"a\": 1, \"a\": 2}");
    let out = kubesafe(&["sign", "--key-file", p(&key), "--kid", "k1", p(&bad_action)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("bad.json: duplicate member name"),
        "{}",
        stderr(&out)
    );

    let huge = dir.file("huge.json", b"{\"n\": 9007199254740993}");
    let out = kubesafe(&["sign", "--key-file", p(&key), "--kid", "k1", p(&huge)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("9007199254740993"),
        "{}",
        stderr(&out)
    );

    // A key file readable by others still works, with a warning.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = kubesafe(&["sign", "--key-file", p(&key), "--kid", "k1", p(&action)]);
        assert!(out.status.success());
        assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    }
}

#[test]
fn key_from_environment() {
    let dir = Dir::new("env");
    let action = dir.file("action.json", ACTION.as_bytes());
    // base64 of SECRET, computed independently of our decoder.
    let b64 = python_b64(SECRET);
    let Some(b64) = b64 else { return };
    let value = format!("base64:{b64}");
    let out = kubesafe_with(
        &[
            "sign",
            "--key-env",
            "KUBESAFE_TEST_KEY",
            "--kid",
            "k1",
            p(&action),
        ],
        &[("KUBESAFE_TEST_KEY", &value)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let env = dir.file("env", &out.stdout);
    // The same secret as a raw file verifies it.
    let key = dir.file("key", SECRET);
    let out = kubesafe(&["verify", "--key-file", p(&key), "--kid", "k1", p(&env)]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Raw value form.
    let raw = std::str::from_utf8(SECRET).unwrap();
    let out = kubesafe_with(
        &[
            "verify",
            "--key-env",
            "KUBESAFE_TEST_KEY",
            "--kid",
            "k1",
            p(&env),
        ],
        &[("KUBESAFE_TEST_KEY", raw)],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kubesafe(&[
        "verify",
        "--key-env",
        "KUBESAFE_TEST_UNSET_VAR",
        "--kid",
        "k1",
        p(&env),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("KUBESAFE_TEST_UNSET_VAR is not set"));
    // Exactly one key source.
    let out = kubesafe(&["verify", "--kid", "k1", p(&env)]);
    assert_eq!(out.status.code(), Some(2));
}

fn tool(program: &str, args: &[&str]) -> Option<String> {
    match Command::new(program).args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "{program}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8(out.stdout).unwrap())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{program} is required under CI=true but is not installed");
            }
            eprintln!("SKIPPED: {program} is not installed");
            None
        }
        Err(e) => panic!("{program}: {e}"),
    }
}

fn python_b64(bytes: &[u8]) -> Option<String> {
    let arg = std::str::from_utf8(bytes).unwrap();
    tool(
        "python3",
        &[
            "-c",
            "import base64,sys; print(base64.b64encode(sys.argv[1].encode()).decode(), end='')",
            arg,
        ],
    )
}

#[test]
fn legacy_hex_signatures_from_node_and_python() {
    let dir = Dir::new("legacy");
    let key = dir.file("key", &[SECRET, b"\n"].concat());
    // The body exactly as JSON.stringify writes it.
    let Some(body) = tool(
        "node",
        &[
            "-e",
            "process.stdout.write(JSON.stringify({actionType: 'restart_pod', actionParams: {namespace: 'shop', name: 'web-0'}, requestedBy: 'engine \u{2603}'}))",
        ],
    ) else {
        return;
    };
    let body_file = dir.file("body.json", body.as_bytes());
    let node_sig = tool(
        "node",
        &[
            "-e",
            "const fs = require('fs'); const [k, b] = process.argv.slice(1); \
             process.stdout.write(require('crypto').createHmac('sha256', fs.readFileSync(k, 'utf8').replace(/\\n$/, '')).update(fs.readFileSync(b)).digest('hex'))",
            p(&key),
            p(&body_file),
        ],
    )
    .unwrap();
    let python_sig = tool(
        "python3",
        &[
            "-c",
            "import hashlib, hmac, sys; k = open(sys.argv[1], 'rb').read().rstrip(b'\\n'); \
             print('sha256=' + hmac.new(k, open(sys.argv[2], 'rb').read(), hashlib.sha256).hexdigest(), end='')",
            p(&key),
            p(&body_file),
        ],
    )
    .unwrap();
    assert_eq!(format!("sha256={node_sig}"), python_sig);
    for sig in [&node_sig, &python_sig] {
        let out = kubesafe(&[
            "verify",
            "--legacy-hex",
            sig,
            "--key-file",
            p(&key),
            p(&body_file),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let action: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(action["actionParams"]["name"], "web-0");
    }
    // One byte more in the body: refused.
    let edited = dir.file("edited.json", format!("{body} ").as_bytes());
    let out = kubesafe(&[
        "verify",
        "--json",
        "--legacy-hex",
        &node_sig,
        "--key-file",
        p(&key),
        p(&edited),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("UNAUTHORIZED"), "{}", stderr(&out));
    // Truncated signature: malformed, not compared.
    let out = kubesafe(&[
        "verify",
        "--legacy-hex",
        &node_sig[..40],
        "--key-file",
        p(&key),
        p(&body_file),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("SCHEMA_VALIDATION_FAILED"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn github_example_through_the_cli() {
    let dir = Dir::new("github");
    let key = dir.file("key", b"It's a Secret to Everybody");
    let body = dir.file("body", b"Hello, World!");
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    // 26 bytes: refused unless short legacy keys are allowed explicitly.
    let out = kubesafe(&[
        "verify",
        "--legacy-hex",
        sig,
        "--key-file",
        p(&key),
        p(&body),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("minimum is 32"), "{}", stderr(&out));
    // With the opt-in the MAC matches; the body is not JSON, which is the only complaint.
    let out = kubesafe(&[
        "verify",
        "--legacy-hex",
        sig,
        "--allow-short-legacy-key",
        "--key-file",
        p(&key),
        p(&body),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("SCHEMA_VALIDATION_FAILED: invalid JSON"),
        "{}",
        stderr(&out)
    );
    let wrong = sig.replace("757107", "757108");
    let out = kubesafe(&[
        "verify",
        "--legacy-hex",
        &wrong,
        "--allow-short-legacy-key",
        "--key-file",
        p(&key),
        p(&body),
    ]);
    assert!(stderr(&out).contains("UNAUTHORIZED"), "{}", stderr(&out));
}
