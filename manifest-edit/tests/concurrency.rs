//! Concurrency test: several processes each set a different flag on the same manifest at
//! the same moment, several rounds each. Every update must survive (no lost update), every
//! write must be backed up, and nothing but the manifest is ever visible to the kubelet.
//!
//! The writers are this test binary re-executed with `--ignored --exact concurrency_child`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubesafe_manifest_edit::{Backup, Edit, FileOptions, Manifest, ManifestFile};

const WRITERS: usize = 6;
const ROUNDS: usize = 5;
const PATH_ENV: &str = "KUBESAFE_CONC_PATH";
const ID_ENV: &str = "KUBESAFE_CONC_ID";
const GO_ENV: &str = "KUBESAFE_CONC_GO";
const BACKUP_ENV: &str = "KUBESAFE_CONC_BACKUPS";

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
spec:
  containers:
  - command:
    - kube-apiserver
    # flags added by the writers follow
    - --secure-port=6443
    name: kube-apiserver
";

#[test]
#[ignore = "child process of concurrent_writers_lose_no_update"]
fn concurrency_child() {
    let Some(path) = std::env::var_os(PATH_ENV) else {
        return;
    };
    let id: usize = std::env::var(ID_ENV).unwrap().parse().unwrap();
    let go = PathBuf::from(std::env::var_os(GO_ENV).unwrap());
    let backups = PathBuf::from(std::env::var_os(BACKUP_ENV).unwrap());
    // Start together.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !go.exists() {
        assert!(Instant::now() < deadline, "never told to go");
        std::thread::yield_now();
    }
    let file = ManifestFile::open(&path, FileOptions::new().backup(Backup::Dir(backups))).unwrap();
    for round in 1..=ROUNDS {
        let r = file
            .apply(&Edit::new().set_flag(format!("--writer-{id}"), round.to_string()))
            .unwrap();
        assert!(r.written, "writer {id} round {round} wrote nothing");
    }
}

#[test]
fn concurrent_writers_lose_no_update() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("kube-apiserver.yaml");
    let backups = tmp.path().join("kubesafe-backups");
    let go = tmp.path().join("go");
    fs::write(&path, POD).unwrap();

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WRITERS)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "concurrency_child",
                    "--test-threads=1",
                ])
                .env(PATH_ENV, &path)
                .env(ID_ENV, id.to_string())
                .env(GO_ENV, &go)
                .env(BACKUP_ENV, &backups)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    fs::write(&go, "").unwrap();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a writer failed");
    }

    let text = fs::read_to_string(&path).unwrap();
    let m = Manifest::parse(text.clone()).unwrap();
    for id in 0..WRITERS {
        let v = m.get_flag(None, &format!("--writer-{id}")).unwrap();
        assert_eq!(
            v.and_then(|f| f.value).as_deref(),
            Some(ROUNDS.to_string().as_str()),
            "writer {id}'s last update was lost:\n{text}"
        );
    }
    // Untouched parts survived every write.
    assert!(text.contains("    # flags added by the writers follow\n    - --secure-port=6443\n"));
    // One backup per write, each a complete earlier version.
    let backup_files: Vec<PathBuf> = fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert_eq!(backup_files.len(), WRITERS * ROUNDS);
    for b in &backup_files {
        Manifest::parse(fs::read_to_string(b).unwrap()).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]);
}
