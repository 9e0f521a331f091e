//! Loki sink against a loopback HTTP(S) server that checks the push payload
//! (not a real Loki — it cannot be installed in CI).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr,
    clippy::type_complexity
)]

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubesafe_audit_log::loki::{LokiOptions, LokiSink};
use kubesafe_audit_log::{AuditLog, AuditRecord, Error, Status, VerifyOptions, verify};
use serde_json::Value;

#[derive(Debug, Clone)]
struct Req {
    at: Instant,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

#[derive(Default)]
struct State {
    requests: Vec<Req>,
    /// Status codes to answer, in order; 204 once empty.
    responses: VecDeque<u16>,
}

struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

fn read_request(stream: &mut dyn Read) -> Option<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((method, path, headers, body))
}

impl Server {
    fn start(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let st = Arc::clone(&st);
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let mut stream: Box<dyn ReadWrite> = match tls {
                        Some(cfg) => Box::new(rustls::StreamOwned::new(
                            rustls::ServerConnection::new(cfg).unwrap(),
                            tcp,
                        )),
                        None => Box::new(tcp),
                    };
                    let Some((method, path, headers, body)) = read_request(&mut *stream) else {
                        return;
                    };
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let code = {
                        let mut s = st.lock().unwrap();
                        s.requests.push(Req {
                            at: Instant::now(),
                            method,
                            path,
                            headers,
                            body,
                        });
                        s.responses.pop_front().unwrap_or(204)
                    };
                    let reason = match code {
                        204 => "No Content",
                        400 => "Bad Request",
                        429 => "Too Many Requests",
                        _ => "Service Unavailable",
                    };
                    let msg = if code == 204 {
                        String::new()
                    } else {
                        format!("test server says {code}")
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                        msg.len()
                    );
                    let _ = stream.flush();
                });
            }
        });
        Server {
            addr,
            state,
            stop,
            handle: Some(handle),
        }
    }

    fn requests(&self) -> Vec<Req> {
        self.state.lock().unwrap().requests.clone()
    }

    fn respond(&self, codes: &[u16]) {
        self.state.lock().unwrap().responses.extend(codes);
    }
}

trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn rec(i: usize) -> AuditRecord {
    AuditRecord::new(
        if i.is_multiple_of(2) {
            "manifest.edit"
        } else {
            "health.gate"
        },
        if i.is_multiple_of(3) {
            Status::Failed
        } else {
            Status::Completed
        },
    )
    .namespace("kube-system")
    .resource("Pod", format!("kube-apiserver-node-{i}"))
    .requested_by(format!("user-{i}"))
    .created_at(jiff::Timestamp::from_second(1_700_000_000 + i as i64).unwrap())
}

/// Checks one request against the documented push protocol and returns its
/// `(labels, [ts, line])` entries in payload order.
fn check_push(
    req: &Req,
    static_labels: &[(&str, &str)],
) -> Vec<(serde_json::Map<String, Value>, String, String)> {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/loki/api/v1/push");
    assert!(
        req.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/json"))
    );
    let obj = req.body.as_object().expect("body is a JSON object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["streams"]);
    let mut out = Vec::new();
    for stream in obj["streams"].as_array().unwrap() {
        let s = stream.as_object().unwrap();
        assert_eq!(
            s.keys().cloned().collect::<BTreeSet<_>>(),
            BTreeSet::from(["stream".to_owned(), "values".to_owned()])
        );
        let labels = s["stream"].as_object().unwrap().clone();
        let mut allowed: BTreeSet<&str> = BTreeSet::from(["action_type", "status"]);
        allowed.extend(static_labels.iter().map(|(k, _)| *k));
        for (k, v) in &labels {
            assert!(
                allowed.contains(k.as_str()),
                "high-cardinality or unknown label {k}"
            );
            assert!(v.is_string());
        }
        for (k, v) in static_labels {
            assert_eq!(labels[*k], *v);
        }
        for v in s["values"].as_array().unwrap() {
            let pair = v.as_array().unwrap();
            assert_eq!(pair.len(), 2);
            let ts = pair[0].as_str().expect("timestamp is a string");
            assert!(
                ts.len() >= 19 && ts.bytes().all(|b| b.is_ascii_digit()),
                "ns timestamp {ts}"
            );
            let line = pair[1].as_str().unwrap();
            let r: Value = serde_json::from_str(line).unwrap();
            assert_eq!(labels["action_type"], r["actionType"]);
            assert_eq!(labels["status"], r["status"]);
            let ns = r["createdAt"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
                .as_nanosecond();
            assert_eq!(ts, ns.to_string());
            out.push((labels.clone(), ts.to_owned(), line.to_owned()));
        }
    }
    out
}

fn seqs(entries: &[(serde_json::Map<String, Value>, String, String)]) -> Vec<u64> {
    let mut v: Vec<u64> = entries
        .iter()
        .map(|(_, _, l)| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    v.sort();
    v
}

const STATICS: [(&str, &str); 2] = [("app", "kubesafe"), ("cluster", "prod-1")];

fn opts(url: String, dir: &std::path::Path) -> LokiOptions {
    LokiOptions::new(url, dir.join("spool"))
        .label("cluster", "prod-1")
        .batch_records(5)
        .backoff(Duration::from_millis(40), Duration::from_millis(400))
        .retries(3)
}

#[test]
fn pushes_documented_payload_in_batches_with_low_cardinality_labels() {
    let server = Server::start(TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::new(
        LokiSink::open(opts(format!("http://{}", server.addr), dir.path()).tenant("team-a"))
            .unwrap(),
    );
    for i in 0..12 {
        log.append(&rec(i)).unwrap();
    }
    assert_eq!(
        server.requests().len(),
        2,
        "two full batches pushed during append"
    );
    log.flush().unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let statics = STATICS;
    let sizes: Vec<usize> = reqs.iter().map(|r| check_push(r, &statics).len()).collect();
    assert_eq!(sizes, [5, 5, 2]);
    let all: Vec<_> = reqs.iter().flat_map(|r| check_push(r, &statics)).collect();
    assert_eq!(seqs(&all), (1..=12).collect::<Vec<_>>());
    // Several label sets in one batch become several streams.
    assert!(reqs[0].body["streams"].as_array().unwrap().len() >= 3);
    assert!(reqs.iter().all(|r| {
        r.headers
            .iter()
            .any(|(k, v)| k == "x-scope-orgid" && v == "team-a")
    }));
    assert_eq!(log.sink().delivered_seq(), 12);
    // The lines pushed are the sealed records: they verify as a chain.
    let mut lines: Vec<(u64, String)> = all
        .iter()
        .map(|(_, _, l)| {
            (
                serde_json::from_str::<Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap(),
                l.clone(),
            )
        })
        .collect();
    lines.sort();
    let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    assert!(
        kubesafe_audit_log::verify_bytes("loki", text.as_bytes(), &VerifyOptions::new())
            .is_intact()
    );
}

#[test]
fn retries_with_backoff_then_gives_up_on_permanent_errors() {
    let server = Server::start(TcpListener::bind("127.0.0.1:0").unwrap(), None);
    let dir = tempfile::tempdir().unwrap();
    let mut log = AuditLog::new(
        LokiSink::open(opts(format!("http://{}", server.addr), dir.path()).batch_records(100))
            .unwrap(),
    );
    log.append(&rec(0)).unwrap();
    server.respond(&[503, 429]);
    log.flush().unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let gap1 = reqs[1].at - reqs[0].at;
    let gap2 = reqs[2].at - reqs[1].at;
    assert!(gap1 >= Duration::from_millis(40), "{gap1:?}");
    assert!(
        gap2 >= Duration::from_millis(80),
        "back-off doubles: {gap2:?}"
    );
    assert_eq!(check_push(&reqs[2], &STATICS).len(), 1);

    // Still failing after `retries` attempts: an error, and the record stays pending.
    log.append(&rec(1)).unwrap();
    server.respond(&[503, 503, 503]);
    let err = log.flush().unwrap_err();
    assert!(matches!(err, Error::Loki { .. }), "{err}");
    assert_eq!(log.sink_mut().pending().unwrap(), 1);
    log.flush().unwrap();
    assert_eq!(log.sink_mut().pending().unwrap(), 0);

    // A 400 is permanent: one attempt, no retry.
    log.append(&rec(2)).unwrap();
    let before = server.requests().len();
    server.respond(&[400]);
    let err = log.flush().unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    assert_eq!(server.requests().len(), before + 1);
}

#[test]
fn records_are_spooled_while_loki_is_down_and_delivered_in_order_when_it_returns() {
    // Reserve a port, then close it: Loki is "down" (connection refused).
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let mut log = AuditLog::new(LokiSink::open(opts(url.clone(), dir.path())).unwrap());
    let mut sealed = Vec::new();
    for i in 0..8 {
        sealed.push(log.append(&rec(i)).unwrap()); // appends succeed while Loki is down
    }
    assert!(log.flush().is_err());
    assert_eq!(log.sink_mut().pending().unwrap(), 8);
    // The process restarts while Loki is still down: the spool keeps records and chain.
    drop(log);
    let mut log = AuditLog::new(LokiSink::open(opts(url, dir.path())).unwrap());
    for i in 8..11 {
        sealed.push(log.append(&rec(i)).unwrap());
    }
    assert_eq!(sealed[8].prev_hash, sealed[7].hash);
    assert_eq!(log.sink_mut().pending().unwrap(), 11);
    let spool_report = verify(log.sink().spool().path(), &VerifyOptions::new()).unwrap();
    assert!(spool_report.is_intact());

    // Loki comes back on the same address.
    let server = Server::start(TcpListener::bind(addr).unwrap(), None);
    log.flush().unwrap();
    let reqs = server.requests();
    let entries: Vec<_> = reqs.iter().flat_map(|r| check_push(r, &STATICS)).collect();
    // In order: request by request, and seq-ascending across requests.
    let per_request: Vec<Vec<u64>> = reqs
        .iter()
        .map(|r| seqs(&check_push(r, &STATICS)))
        .collect();
    let flat: Vec<u64> = per_request.concat();
    assert_eq!(
        flat,
        (1..=11).collect::<Vec<_>>(),
        "delivered in order: {per_request:?}"
    );
    assert_eq!(entries.len(), 11);
    for (s, e) in sealed.iter().zip(&flat) {
        assert_eq!(s.seq, *e);
    }
    assert_eq!(log.sink().delivered_seq(), 11);
    assert_eq!(log.sink_mut().pending().unwrap(), 0);
    // Nothing is pushed twice.
    log.flush().unwrap();
    assert_eq!(server.requests().len(), reqs.len());
}

#[test]
fn https_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let server_cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
    )
    .unwrap();
    let server = Server::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        Some(Arc::new(server_cfg)),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let url = format!("https://localhost:{}", server.addr.port());

    // Without the CA: the certificate is rejected, the record stays spooled.
    let mut log =
        AuditLog::new(LokiSink::open(opts(url.clone(), &dir.path().join("a")).retries(1)).unwrap());
    log.append(&rec(0)).unwrap();
    assert!(log.flush().is_err());
    assert!(server.requests().is_empty());
    drop(log);

    let mut log =
        AuditLog::new(LokiSink::open(opts(url, &dir.path().join("b")).ca_file(&ca_file)).unwrap());
    log.append(&rec(0)).unwrap();
    log.flush().unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    check_push(&reqs[0], &STATICS);
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (o, what) in [
        (LokiOptions::new("loki:3100", dir.path()), "url"),
        (
            LokiOptions::new("http://l", dir.path()).label("resource name", "x"),
            "labels",
        ),
        (
            LokiOptions::new("http://l", dir.path()).label("status", "x"),
            "labels",
        ),
        (
            LokiOptions::new("http://l", dir.path()).batch_records(0),
            "batch_records",
        ),
    ] {
        let err = LokiSink::open(o).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
    }
}
