//! The HTTP(S) probe against the simulated kube-apiserver: real TLS on
//! loopback, certificates generated at test time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod common;

use std::time::{Duration, Instant};

use common::Bed;
use kubesafe_health_gate::probe::{CheckState, HealthProbe, HttpProbe, ProbeStatus};

#[test]
fn ca_and_client_cert_healthy_with_parsed_checks() {
    let bed = Bed::start(|b| b);
    let mut probe = bed.probe();
    let o = probe.check(Duration::from_secs(2));
    assert_eq!(o.status, ProbeStatus::Healthy, "{o}");
    assert_eq!(o.http_status, Some(200));
    assert_eq!(o.detail, "readyz check passed");
    assert!(
        o.checks
            .iter()
            .any(|c| c.name == "etcd" && c.state == CheckState::Passed)
    );
    assert!(o.checks.iter().any(|c| c.name == "shutdown"));

    // Plain (non-verbose) livez answers just "ok".
    let mut plain = bed.node.probe("/livez").build().unwrap();
    let o = plain.check(Duration::from_secs(2));
    assert_eq!(o.status, ProbeStatus::Healthy, "{o}");
    assert!(o.checks.is_empty());
    assert_eq!(o.detail, "ok");
}

#[test]
fn wrong_ca_is_unreachable_and_insecure_opt_in_works() {
    let bed = Bed::start(|b| b);
    let mut wrong = HttpProbe::builder(bed.node.url("/livez"))
        .ca_file(&bed.node.pki().other_ca_cert)
        .build()
        .unwrap();
    let o = wrong.check(Duration::from_secs(2));
    assert_eq!(o.status, ProbeStatus::Unreachable, "{o}");
    assert!(
        o.detail.to_lowercase().contains("certificate"),
        "{}",
        o.detail
    );

    let mut insecure = HttpProbe::builder(bed.node.url("/livez"))
        .insecure_skip_tls_verify()
        .build()
        .unwrap();
    assert_eq!(
        insecure.check(Duration::from_secs(2)).status,
        ProbeStatus::Healthy
    );
}

#[test]
fn anonymous_auth_false_gives_401_unless_credentials_are_given() {
    let bed = Bed::start(|b| b.args(["--anonymous-auth=false"]));
    let ca = &bed.node.pki().ca_cert;

    let mut anonymous = HttpProbe::builder(bed.node.url("/livez"))
        .ca_file(ca)
        .build()
        .unwrap();
    let o = anonymous.check(Duration::from_secs(2));
    assert_eq!(o.status, ProbeStatus::Unauthorized, "{o}");
    assert_eq!(o.http_status, Some(401));
    assert!(
        o.detail.contains("client certificate or a bearer token"),
        "{}",
        o.detail
    );

    let mut cert = bed.node.probe("/livez").build().unwrap();
    assert_eq!(
        cert.check(Duration::from_secs(2)).status,
        ProbeStatus::Healthy
    );

    let mut token = HttpProbe::builder(bed.node.url("/livez"))
        .ca_file(ca)
        .bearer_token_file(&bed.node.pki().token_file)
        .build()
        .unwrap();
    assert_eq!(
        token.check(Duration::from_secs(2)).status,
        ProbeStatus::Healthy
    );

    let mut bad_token = HttpProbe::builder(bed.node.url("/livez"))
        .ca_file(ca)
        .bearer_token("not-the-token")
        .build()
        .unwrap();
    assert_eq!(
        bad_token.check(Duration::from_secs(2)).status,
        ProbeStatus::Unauthorized
    );
}

#[test]
fn forbidden_is_unauthorized_not_unhealthy() {
    let bed = Bed::start(|b| b.args(["--sim-fault=forbid-anonymous"]));
    let mut anonymous = HttpProbe::builder(bed.node.url("/healthz"))
        .ca_file(&bed.node.pki().ca_cert)
        .build()
        .unwrap();
    let o = anonymous.check(Duration::from_secs(2));
    assert_eq!(o.status, ProbeStatus::Unauthorized, "{o}");
    assert_eq!(o.http_status, Some(403));
    assert!(o.detail.contains("system:anonymous"), "{}", o.detail);
}

#[test]
fn failing_check_is_unhealthy_and_exclude_skips_it() {
    let bed = Bed::start_unready(|b| b.args(["--sim-fault=etcd-down"]));
    let mut probe = bed.node.probe("/livez").build().unwrap();
    let started = Instant::now();
    let o = loop {
        let o = probe.check(Duration::from_secs(2));
        if o.status != ProbeStatus::Unreachable || started.elapsed() > Duration::from_secs(10) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(o.status, ProbeStatus::Unhealthy, "{o}");
    assert_eq!(o.http_status, Some(500));
    assert_eq!(o.failed_checks().collect::<Vec<_>>(), vec!["etcd"]);
    assert_eq!(o.detail, "failed checks: etcd");

    let mut excluded = bed
        .node
        .probe("/readyz")
        .exclude("etcd")
        .exclude("etcd-readiness")
        .verbose(true)
        .build()
        .unwrap();
    let o = excluded.check(Duration::from_secs(2));
    assert_eq!(o.status, ProbeStatus::Healthy, "{o}");
    assert!(
        o.checks
            .iter()
            .any(|c| c.name == "etcd" && c.state == CheckState::Excluded)
    );
}

#[test]
fn hanging_server_times_out_within_the_timeout() {
    let bed = Bed::start_unready(|b| b.args(["--sim-fault=hang"]));
    let mut probe = bed
        .node
        .probe("/livez")
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    // Wait for the listener (the server accepts but never answers).
    let started = Instant::now();
    let o = loop {
        let o = probe.check(Duration::from_millis(300));
        if o.status != ProbeStatus::Unreachable || started.elapsed() > Duration::from_secs(10) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The reason first, then a bound far below the probe's own 30 s.
    assert_eq!(o.status, ProbeStatus::TimedOut, "{o}");
    assert!(o.latency < Duration::from_secs(5), "{:?}", o.latency);
    let t = Instant::now();
    let o = probe.check(Duration::from_millis(200));
    assert_eq!(o.status, ProbeStatus::TimedOut, "{o}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn required_client_cert_fails_the_handshake_without_one() {
    let bed = Bed::start(|b| b.args(["--sim-fault=require-client-cert"]));
    let mut anonymous = HttpProbe::builder(bed.node.url("/livez"))
        .ca_file(&bed.node.pki().ca_cert)
        .build()
        .unwrap();
    let o = anonymous.check(Duration::from_secs(2));
    assert_eq!(o.status, ProbeStatus::Unreachable, "{o}");
    let mut cert = bed.node.probe("/livez").build().unwrap();
    assert_eq!(
        cert.check(Duration::from_secs(2)).status,
        ProbeStatus::Healthy
    );
}

#[test]
fn refused_connection_is_unreachable() {
    let bed = Bed::start(|b| b);
    let mut probe = HttpProbe::builder(format!("https://{}:1/livez", bed.node.address()))
        .insecure_skip_tls_verify()
        .build()
        .unwrap();
    let o = probe.check(Duration::from_secs(2));
    assert_eq!(o.status, ProbeStatus::Unreachable, "{o}");
}

/// A plain-HTTP server on loopback that answers each connection with
/// `respond`, in its own thread; returns its address and a counter of the
/// connections it accepted.
fn serve(
    respond: impl Fn(std::net::TcpStream) + Send + Sync + 'static,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU32>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let count = std::sync::Arc::clone(&accepted);
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let respond = std::sync::Arc::clone(&respond);
            std::thread::spawn(move || respond(stream));
        }
    });
    (addr, accepted)
}

/// Reads the request head so the client is not reset before it reads.
fn read_request(stream: &mut std::net::TcpStream) {
    use std::io::Read;
    let mut buf = [0_u8; 4096];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
}

/// Writes `bytes` one at a time, `gap` apart (a server trickling its answer:
/// every single read succeeds, the whole answer takes forever).
fn trickle(stream: &mut std::net::TcpStream, bytes: &[u8], gap: Duration) {
    use std::io::Write;
    for b in bytes {
        if stream.write_all(&[*b]).is_err() {
            return;
        }
        std::thread::sleep(gap);
    }
}

#[test]
fn a_server_trickling_its_answer_cannot_stall_the_probe_past_its_timeout() {
    // Headers at once, then the body one byte every 100 ms: 100 s in all.
    let (body_addr, _) = serve(|mut s| {
        use std::io::Write;
        read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        trickle(&mut s, &[b'k'; 1000], Duration::from_millis(100));
    });
    // The status line and headers themselves one byte every 100 ms.
    let (head_addr, _) = serve(|mut s| {
        read_request(&mut s);
        let head = b"HTTP/1.1 200 OK\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nContent-Length: 2\r\n\r\nok";
        trickle(&mut s, head, Duration::from_millis(100));
    });
    for addr in [body_addr, head_addr] {
        let mut probe = HttpProbe::builder(format!("http://{addr}/livez"))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let started = Instant::now();
        let o = probe.check(Duration::from_millis(500));
        // The reason, then a bound far below the trickle's 10+ s.
        assert_eq!(o.status, ProbeStatus::TimedOut, "{addr}: {o}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{addr}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn redirects_are_not_followed() {
    // A health endpoint that redirects elsewhere is not healthy, and the
    // probe (with its credentials) never goes there.
    let (elsewhere, visits) = serve(|mut s| {
        use std::io::Write;
        read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let (addr, _) = serve(move |mut s| {
        use std::io::Write;
        read_request(&mut s);
        let answer = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{elsewhere}/livez\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = s.write_all(answer.as_bytes());
    });
    let mut probe = HttpProbe::builder(format!("http://{addr}/livez"))
        .bearer_token("t0ken")
        .build()
        .unwrap();
    let o = probe.check(Duration::from_secs(5));
    assert_eq!(o.status, ProbeStatus::Unhealthy, "{o}");
    assert_eq!(o.http_status, Some(302));
    assert_eq!(visits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn unexpected_bodies_are_read_safely() {
    // Binary garbage, invalid UTF-8 and a body far larger than any health
    // report: the status code decides, the detail stays one short line.
    let (addr, _) = serve(|mut s| {
        use std::io::Write;
        read_request(&mut s);
        let mut body = vec![0xff_u8, 0xfe, b'[', b'-', b']'];
        body.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
        let head = format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(&body);
    });
    let mut probe = HttpProbe::builder(format!("http://{addr}/readyz?verbose"))
        .build()
        .unwrap();
    let o = probe.check(Duration::from_secs(10));
    assert_eq!(o.status, ProbeStatus::Unhealthy, "{o}");
    assert_eq!(o.http_status, Some(500));
    assert!(o.detail.chars().count() <= 200, "{}", o.detail.len());
}
