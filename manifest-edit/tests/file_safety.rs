//! The safe write against a real filesystem: mode/owner/group, backups outside the
//! manifest directory, the stable hidden lock, the optimistic check, refusals of
//! symlinks/directories/FIFOs, restore for rollback, and real ENOSPC/EROFS on tmpfs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kubesafe_manifest_edit::{Backup, Edit, Error, FileOptions, ManifestFile, sha256_hex};

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
spec:
  containers:
  - command:
    - kube-apiserver
    - --profiling=true # CIS 1.2.18
    name: kube-apiserver
";

struct Node {
    _root: tempfile::TempDir,
    root: PathBuf,
    manifests: PathBuf,
    path: PathBuf,
}

/// `<tmp>/etc/kubernetes/manifests/kube-apiserver.yaml`, mode 0600.
fn node() -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("etc/kubernetes");
    let manifests = root.join("manifests");
    fs::create_dir_all(&manifests).unwrap();
    let path = manifests.join("kube-apiserver.yaml");
    fs::write(&path, POD).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    Node {
        _root: tmp,
        root,
        manifests,
        path,
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// What the kubelet loads: the non-hidden regular files (`filepath.Glob(dir/[^.]*)`).
fn kubelet_view(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .filter(|n| dir.join(n).is_file())
        .collect()
}

fn profiling_false() -> Edit {
    Edit::new().set_flag("--profiling", "false")
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"))
}

#[test]
fn write_keeps_mode_owner_and_comments_and_backs_up_outside() {
    let n = node();
    fs::set_permissions(&n.path, fs::Permissions::from_mode(0o640)).unwrap();
    let chowned = is_root();
    if chowned {
        std::os::unix::fs::chown(&n.path, Some(1234), Some(2345)).unwrap();
    } else {
        eprintln!("NOTICE: not root; owner preservation checked for the current user only");
    }
    let before = fs::metadata(&n.path).unwrap();

    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    let report = file.apply(&profiling_false()).unwrap();

    assert!(report.written && report.changed && report.data_changed);
    assert_eq!(report.kind.as_deref(), Some("Pod"));
    let after_text = fs::read_to_string(&n.path).unwrap();
    assert_eq!(
        after_text,
        POD.replace("--profiling=true", "--profiling=false")
    );
    assert_eq!(report.before_sha256, sha256_hex(POD.as_bytes()));
    assert_eq!(report.after_sha256, sha256_hex(after_text.as_bytes()));
    assert_eq!(report.new_content, after_text.as_bytes());
    assert_eq!(report.changes.len(), 1);
    assert_eq!(report.changes[0].line, 9);

    let after = fs::metadata(&n.path).unwrap();
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    if chowned {
        assert_eq!((after.uid(), after.gid()), (1234, 2345));
    }
    assert_ne!(
        after.ino(),
        before.ino(),
        "replaced by rename, not rewritten in place"
    );

    // The backup: a sibling of the manifest directory, named with timestamp and hash.
    let backup = report.backup.clone().unwrap();
    assert_eq!(
        backup.parent().unwrap(),
        fs::canonicalize(&n.root).unwrap().join("kubesafe-backups")
    );
    let name = backup.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("kube-apiserver.yaml.20"), "{name}");
    assert!(name.ends_with(&report.before_sha256[..16]), "{name}");
    assert_eq!(fs::read_to_string(&backup).unwrap(), POD);
    let bmeta = fs::metadata(&backup).unwrap();
    assert_eq!(bmeta.mode() & 0o7777, 0o640);
    assert_eq!((bmeta.uid(), bmeta.gid()), (after.uid(), after.gid()));
    assert_eq!(
        fs::metadata(backup.parent().unwrap()).unwrap().mode() & 0o777,
        0o700
    );

    // Nothing the kubelet could load appeared; the lock file is hidden and stays.
    assert_eq!(kubelet_view(&n.manifests), ["kube-apiserver.yaml"]);
    assert_eq!(
        names(&n.manifests),
        [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]
    );
    let lock_inode = fs::metadata(file.lock_path()).unwrap().ino();

    // Idempotent: nothing written, no new backup, same lock file.
    let again = file.apply(&profiling_false()).unwrap();
    assert!(!again.changed && !again.written && again.backup.is_none());
    file.apply(&Edit::new().set_flag("--v", "2")).unwrap();
    assert_eq!(
        fs::metadata(file.lock_path()).unwrap().ino(),
        lock_inode,
        "lock file never replaced"
    );
    assert_eq!(names(backup.parent().unwrap()).len(), 2);
}

/// In a set-group-ID directory a new file takes the directory's group, not the
/// creator's: the temp file must still end up with the manifest's own group and mode (and
/// so must the backup).
#[test]
fn group_and_mode_survive_a_setgid_directory() {
    if !is_root() {
        eprintln!("NOTICE: not root; set-group-ID directory test skipped");
        return;
    }
    let n = node();
    std::os::unix::fs::chown(&n.manifests, None, Some(2345)).unwrap();
    fs::set_permissions(&n.manifests, fs::Permissions::from_mode(0o2755)).unwrap();
    std::os::unix::fs::chown(&n.path, Some(1234), Some(3456)).unwrap();
    fs::set_permissions(&n.path, fs::Permissions::from_mode(0o640)).unwrap();
    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    let r = file.apply(&profiling_false()).unwrap();
    let after = fs::metadata(&n.path).unwrap();
    assert_eq!((after.uid(), after.gid()), (1234, 3456));
    assert_eq!(after.mode() & 0o7777, 0o640);
    let backup = fs::metadata(r.backup.unwrap()).unwrap();
    assert_eq!((backup.uid(), backup.gid()), (1234, 3456));
    assert_eq!(backup.mode() & 0o7777, 0o640);
}

#[test]
fn comment_only_edit_is_not_a_data_change() {
    let n = node();
    fs::write(
        &n.path,
        POD.replace("--profiling=true", "\"--profiling=true\""),
    )
    .unwrap();
    let file = ManifestFile::open(&n.path, FileOptions::new().backup(Backup::Disabled)).unwrap();
    // Re-quoting through a set to the same value is no change at all...
    assert!(
        !file
            .apply(&Edit::new().set_flag("--profiling", "true"))
            .unwrap()
            .changed
    );
    // ...while restoring the unquoted spelling changes bytes but not data.
    let quoted = fs::read(&n.path).unwrap();
    let r = file
        .restore(POD.as_bytes(), &sha256_hex(&quoted), false)
        .unwrap();
    assert!(r.written && !r.data_changed);
}

#[test]
fn backup_dir_is_configurable_and_never_the_manifest_dir() {
    let n = node();
    let elsewhere = n.root.join("my-backups");
    let file = ManifestFile::open(
        &n.path,
        FileOptions::new().backup(Backup::Dir(elsewhere.clone())),
    )
    .unwrap();
    let r = file.apply(&profiling_false()).unwrap();
    assert!(
        r.backup
            .unwrap()
            .starts_with(fs::canonicalize(&elsewhere).unwrap())
    );

    let n = node();
    let file = ManifestFile::open(
        &n.path,
        FileOptions::new().backup(Backup::Dir(n.manifests.clone())),
    )
    .unwrap();
    let err = file.apply(&profiling_false()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the kubelet would load the backups"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&n.path).unwrap(), POD);
    assert_eq!(kubelet_view(&n.manifests), ["kube-apiserver.yaml"]);

    // Nor inside it: the kubelet skips a subdirectory but logs an error about it on every
    // pass, and nothing is created there before the refusal. Also through a symlink, a
    // relative path or `..`.
    let n = node();
    let link = n.root.join("link-to-manifests");
    std::os::unix::fs::symlink(&n.manifests, &link).unwrap();
    for dir in [
        n.manifests.join("backups"),
        n.manifests.join("new/deeper"),
        n.manifests.join("new/../b"),
        link.join("backups"),
        link.clone(),
    ] {
        let file = ManifestFile::open(&n.path, FileOptions::new().backup(Backup::Dir(dir.clone())))
            .unwrap();
        let err = file.apply(&profiling_false()).unwrap_err();
        assert!(
            err.to_string().contains("the manifest directory"),
            "{}: {err}",
            dir.display()
        );
        assert_eq!(fs::read_to_string(&n.path).unwrap(), POD);
        assert_eq!(
            names(&n.manifests),
            [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"],
            "{}",
            dir.display()
        );
    }
    // A relative backup directory is resolved against the working directory.
    let rel = ManifestFile::open(
        &n.path,
        FileOptions::new().backup(Backup::Dir(PathBuf::from("."))),
    )
    .unwrap();
    assert!(rel.backup_dir().unwrap().is_some());
}

#[test]
fn refuses_symlinks_directories_fifos_and_missing_files() {
    let n = node();
    let link = n.manifests.join("link.yaml");
    std::os::unix::fs::symlink("kube-apiserver.yaml", &link).unwrap();
    let err = ManifestFile::open(&link, FileOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Symlink { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("link.yaml: is a symbolic link to kube-apiserver.yaml")
    );

    // Allowed: the target is edited, the link stays a link.
    let file = ManifestFile::open(
        &link,
        FileOptions::new()
            .allow_symlink(true)
            .backup(Backup::Disabled),
    )
    .unwrap();
    file.apply(&profiling_false()).unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::read_to_string(&n.path)
            .unwrap()
            .contains("--profiling=false")
    );

    let err = ManifestFile::open(&n.manifests, FileOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotAFile {
                kind: "a directory",
                ..
            }
        ),
        "{err}"
    );

    let fifo = n.manifests.join("fifo.yaml");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let err = ManifestFile::open(&fifo, FileOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NotAFile { .. }), "{err}");

    let err =
        ManifestFile::open(n.manifests.join("missing.yaml"), FileOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                action: "inspect",
                ..
            }
        ),
        "{err}"
    );

    // A symlink planted after open is not followed either.
    let n = node();
    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    let real = n.manifests.join("real.yaml");
    fs::rename(&n.path, &real).unwrap();
    std::os::unix::fs::symlink(&real, &n.path).unwrap();
    let err = file.apply(&profiling_false()).unwrap_err();
    assert!(matches!(err, Error::Symlink { .. }), "{err}");
    assert_eq!(fs::read_to_string(&real).unwrap(), POD);
}

/// `/etc/kubernetes/manifests` may itself be a symbolic link (to a data disk): the file in
/// it is a regular file, edited in the real directory, where the lock and the temp file go
/// (so every writer, whichever path it was given, takes the same lock), and the default
/// backups land beside the real directory, outside it.
#[test]
fn a_symlinked_manifest_directory_is_edited_in_the_real_directory() {
    let n = node();
    let data = n.root.join("data");
    fs::create_dir(&data).unwrap();
    let real = data.join("manifests");
    fs::rename(&n.manifests, &real).unwrap();
    std::os::unix::fs::symlink(&real, &n.manifests).unwrap();
    let via_link = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    let direct =
        ManifestFile::open(real.join("kube-apiserver.yaml"), FileOptions::default()).unwrap();
    assert_eq!(via_link.lock_path(), direct.lock_path());
    assert!(
        via_link
            .lock_path()
            .starts_with(fs::canonicalize(&real).unwrap())
    );
    let r = via_link.apply(&profiling_false()).unwrap();
    assert!(r.written);
    assert!(
        r.backup
            .unwrap()
            .starts_with(fs::canonicalize(&data).unwrap().join("kubesafe-backups"))
    );
    assert!(
        fs::symlink_metadata(&n.manifests)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        names(&real),
        [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]
    );
    assert!(
        fs::read_to_string(&n.path)
            .unwrap()
            .contains("--profiling=false")
    );
}

/// A FIFO swapped in for the manifest after `open`, or planted as the lock file, would
/// block a read-only `open` until some writer appears: the write would hang (and hold the
/// lock) forever. Both are refused at once.
#[test]
fn a_fifo_in_place_of_the_manifest_or_the_lock_is_refused_without_hanging() {
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()));
        rx.recv_timeout(Duration::from_secs(5))
            .expect("blocked on a FIFO")
    }
    let mkfifo = |p: &Path| {
        assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    };
    let n = node();
    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    fs::rename(&n.path, n.manifests.join("saved")).unwrap();
    mkfifo(&n.path);
    let f = file.clone();
    let err = within_5s(move || f.apply(&profiling_false()).unwrap_err());
    assert!(matches!(err, Error::NotAFile { .. }), "{err}");

    let n = node();
    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    mkfifo(&file.lock_path());
    let f = file.clone();
    let err = within_5s(move || f.apply(&profiling_false()).unwrap_err());
    assert!(
        matches!(&err, Error::NotAFile { path, .. } if *path == file.lock_path()),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&n.path).unwrap(), POD);
}

#[test]
fn bad_input_fails_before_anything_is_touched() {
    let n = node();
    fs::write(&n.path, "kind: Pod\nspec: [unclosed\n").unwrap();
    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    let err = file.apply(&profiling_false()).unwrap_err();
    assert!(err.to_string().contains("YAML syntax error"), "{err}");
    assert_eq!(
        names(&n.manifests),
        ["kube-apiserver.yaml"],
        "not even a lock file"
    );
    assert!(!n.root.join("kubesafe-backups").exists());

    fs::write(&n.path, b"kind: Pod\n\xff\xfe").unwrap();
    let err = file.apply(&profiling_false()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not UTF-8 text (invalid byte at offset 10)",
            n.path.display()
        )
    );
}

/// The kubelet reads at most 10 MiB of a static-pod file (`maxConfigLength` in
/// `pkg/kubelet/config/common.go`) and drops the pod of a larger one. A larger file is not
/// read into memory whole, and an edit that would cross the limit writes nothing.
#[test]
fn files_beyond_what_the_kubelet_reads_are_refused() {
    const LIMIT: usize = 10 * 1024 * 1024;
    let n = node();
    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    // Exactly at the limit: read and edited in place (same length), not beyond.
    let pad = |len: usize| {
        let mut t = POD.to_owned();
        while t.len() + 80 < len {
            t.push_str(&format!("# {}\n", "x".repeat(77)));
        }
        t.push('#');
        t.push_str(&"y".repeat(len - t.len() - 1));
        t.push('\n');
        assert_eq!(t.len(), len);
        t
    };
    let at_limit = pad(LIMIT);
    fs::write(&n.path, &at_limit).unwrap();
    assert!(file.read().is_ok());
    let r = file
        .apply(&Edit::new().set_flag("--profiling", "fals"))
        .unwrap();
    assert!(r.written);
    // One byte more than the limit: refused on reading.
    fs::write(&n.path, pad(LIMIT + 1)).unwrap();
    let err = file.apply(&profiling_false()).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: {} bytes, more than the kubelet reads from a manifest ({LIMIT} bytes); refusing",
            n.path.display(),
            LIMIT + 1
        )
    );
    assert!(matches!(file.read(), Err(Error::TooLarge { .. })));
    // An edit that would grow the file past the limit writes nothing.
    fs::write(&n.path, &at_limit).unwrap();
    let err = file.apply(&Edit::new().set_flag("--v", "2")).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(fs::read(&n.path).unwrap(), at_limit.as_bytes());
    assert_eq!(kubelet_view(&n.manifests), ["kube-apiserver.yaml"]);
    let err = file
        .restore(
            &vec![b'#'; LIMIT + 1],
            &sha256_hex(at_limit.as_bytes()),
            false,
        )
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(fs::read(&n.path).unwrap(), at_limit.as_bytes());
}

#[test]
fn optimistic_check_refuses_a_changed_file() {
    let n = node();
    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    let seen = file.sha256().unwrap();
    fs::write(&n.path, POD.replace("# CIS 1.2.18", "# edited by hand")).unwrap();
    let err = file
        .apply_if_unchanged(&profiling_false(), &seen)
        .unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err}");
    assert!(
        fs::read_to_string(&n.path)
            .unwrap()
            .contains("--profiling=true # edited by hand")
    );
    assert!(!n.root.join("kubesafe-backups").exists());
    // With the current hash it goes through.
    let now = file.sha256().unwrap();
    let r = file.apply_if_unchanged(&profiling_false(), &now).unwrap();
    assert!(r.written);
}

#[test]
fn a_change_made_while_waiting_for_the_lock_is_not_lost() {
    let n = node();
    let file = ManifestFile::open(&n.path, FileOptions::new().backup(Backup::Disabled)).unwrap();
    // Another writer holds the lock...
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(file.lock_path())
        .unwrap();
    lock.lock().unwrap();
    let f2 = file.clone();
    let writer = std::thread::spawn(move || f2.apply(&Edit::new().set_flag("--v", "2")));
    std::thread::sleep(Duration::from_millis(200));
    // ...and changes the file while our writer (which already read it) waits.
    let theirs = POD.replace("--profiling=true", "--profiling=false");
    fs::write(&n.path, &theirs).unwrap();
    lock.unlock().unwrap();
    let report = writer.join().unwrap().unwrap();
    assert!(report.written);
    let text = fs::read_to_string(&n.path).unwrap();
    assert!(
        text.contains("--profiling=false") && text.contains("--v=2"),
        "{text}"
    );
    assert_eq!(report.before_sha256, sha256_hex(theirs.as_bytes()));
}

#[test]
fn lock_timeout_is_an_error_and_writes_nothing() {
    let n = node();
    let file = ManifestFile::open(
        &n.path,
        FileOptions::new().lock_timeout(Duration::from_millis(100)),
    )
    .unwrap();
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(file.lock_path())
        .unwrap();
    lock.lock().unwrap();
    let err = file.apply(&profiling_false()).unwrap_err();
    assert!(matches!(err, Error::LockTimeout { .. }), "{err}");
    assert_eq!(fs::read_to_string(&n.path).unwrap(), POD);
}

#[test]
fn restore_puts_bytes_back_only_over_what_we_wrote() {
    let n = node();
    let file = ManifestFile::open(&n.path, FileOptions::default()).unwrap();
    let report = file.apply(&profiling_false()).unwrap();
    let original = fs::read(report.backup.as_ref().unwrap()).unwrap();

    // Someone changed the file since: refuse.
    let err = file
        .restore(&original, &sha256_hex(b"something else"), true)
        .unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err}");
    assert!(
        fs::read_to_string(&n.path)
            .unwrap()
            .contains("--profiling=false")
    );

    // Still what we wrote: put the original back, keeping the replaced bytes outside.
    fs::set_permissions(&n.path, fs::Permissions::from_mode(0o600)).unwrap();
    let r = file.restore(&original, &report.after_sha256, true).unwrap();
    assert!(r.written && r.data_changed);
    assert_eq!(fs::read(&n.path).unwrap(), original);
    assert_eq!(fs::metadata(&n.path).unwrap().mode() & 0o7777, 0o600);
    let kept = r.kept.unwrap();
    assert!(kept.to_str().unwrap().ends_with(".replaced"));
    assert!(!kept.starts_with(fs::canonicalize(&n.manifests).unwrap()));
    assert_eq!(fs::read(&kept).unwrap(), report.new_content);
    assert_eq!(kubelet_view(&n.manifests), ["kube-apiserver.yaml"]);

    // Bytes that do not parse can be restored too (a rollback restores what was there).
    let now = file.sha256().unwrap();
    let r = file.restore(b"not: [yaml", &now, false).unwrap();
    assert!(r.written && r.data_changed && r.kept.is_none());
    // Restoring what is already there writes nothing.
    let r = file
        .restore(b"not: [yaml", &sha256_hex(b"not: [yaml"), false)
        .unwrap();
    assert!(!r.written);
}

/// A tmpfs mounted for the test (root only); unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "NOTICE: cannot mount tmpfs (not root?); real ENOSPC/EROFS test skipped, fault injection covers these paths"
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount_ro(&self) {
        let s = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(s.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn real_enospc_leaves_the_original_and_no_temp_file() {
    let Some(fs_) = Tmpfs::mount("64k") else {
        return;
    };
    let dir = fs_.path().join("manifests");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("kube-apiserver.yaml");
    // A manifest big enough that its copy cannot fit once the filler took the rest.
    let big =
        POD.to_owned() + &"# padding padding padding padding padding padding padding\n".repeat(300);
    fs::write(&path, &big).unwrap();
    let file = ManifestFile::open(&path, FileOptions::new().backup(Backup::Disabled)).unwrap();
    fs::write(file.lock_path(), b"").unwrap();
    // Fill the filesystem.
    let filler = fs_.path().join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 4096];
    while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
    drop(f);

    let err = file.apply(&profiling_false()).unwrap_err();
    let msg = err.to_string();
    eprintln!("ENOSPC: {msg}");
    assert!(
        msg.contains("No space left on device") && msg.contains("temporary file"),
        "{msg}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), big);
    assert_eq!(
        names(&dir),
        [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]
    );

    // Backups to the full filesystem fail first, with the same guarantees.
    let file = ManifestFile::open(
        &path,
        FileOptions::new().backup(Backup::Dir(fs_.path().join("b"))),
    )
    .unwrap();
    assert!(
        file.apply(&profiling_false())
            .unwrap_err()
            .to_string()
            .contains("No space left")
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), big);
    assert_eq!(
        names(&dir),
        [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]
    );

    // Freeing space makes the same edit go through.
    fs::remove_file(&filler).unwrap();
    assert!(file.apply(&profiling_false()).unwrap().written);
}

#[test]
fn real_erofs_leaves_the_original_and_no_temp_file() {
    let Some(fs_) = Tmpfs::mount("1m") else {
        return;
    };
    let dir = fs_.path().join("manifests");
    fs::create_dir(&dir).unwrap();
    let path = dir.join("kube-apiserver.yaml");
    fs::write(&path, POD).unwrap();
    let file = ManifestFile::open(&path, FileOptions::new().backup(Backup::Disabled)).unwrap();
    fs::write(file.lock_path(), b"").unwrap();
    fs_.remount_ro();
    let err = file.apply(&profiling_false()).unwrap_err();
    eprintln!("EROFS: {err}");
    assert!(err.to_string().contains("Read-only file system"), "{err}");
    assert!(
        err.to_string().contains("cannot create temporary file"),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), POD);
    assert_eq!(
        names(&dir),
        [".kube-apiserver.yaml.lock", "kube-apiserver.yaml"]
    );
}
