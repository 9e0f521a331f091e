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
    assert_eq!(o.status, ProbeStatus::TimedOut, "{o}");
    assert!(o.latency < Duration::from_millis(1500), "{:?}", o.latency);
    let t = Instant::now();
    let o = probe.check(Duration::from_millis(200));
    assert_eq!(o.status, ProbeStatus::TimedOut, "{o}");
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "{:?}",
        t.elapsed()
    );
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
