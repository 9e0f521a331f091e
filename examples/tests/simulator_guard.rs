//! The `kubesafe` binary doubles as the simulated kube-apiserver of `kubesafe
//! demo`, but only when the kubelet simulator starts it: a `kubesafe` binary
//! that is merely installed or linked as `kube-apiserver` must never serve fake
//! health answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn named_kube_apiserver_without_the_simulation_env_stays_kubesafe() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kube-apiserver");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubesafe"), &link).unwrap();
    let out = Command::new(&link)
        .arg("--version")
        .env_remove("KUBESAFE_SIMULATION")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("kubesafe "), "{stdout}");
}

#[test]
fn named_kube_apiserver_with_the_simulation_env_is_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kube-apiserver");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubesafe"), &link).unwrap();
    // No certificate flags: the simulator refuses to start, which proves it
    // was the simulator that ran (kubesafe itself would print its version).
    let out = Command::new(&link)
        .arg("--version")
        .env("KUBESAFE_SIMULATION", "1")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("SIMULATION") || all.contains("simulator"),
        "{all}"
    );
}
