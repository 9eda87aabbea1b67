//! README's main job: `fse-sim demo` runs fsed on its embedded defaults
//! (virtual reader with simulated cards, spool transport, insurer simulator
//! on the spool) with no pcscd or broker involved, and prints the counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

#[test]
fn the_main_job_bills_a_batch_and_prints_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::bin("fse-sim"))
        .args(["demo", "--sheets", "12", "--lot-size", "5", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "sheets created: 12",
        "lots signed: 3",
        "transmitted: 3",
        "acknowledged: 3 lots, 12 sheets",
        "CPS signatures: 3",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The database it left behind holds the same story.
    let q = fse_queue::Queue::open(&dir.path().join("fsed.db")).unwrap();
    let stats = q.stats().unwrap();
    assert_eq!(stats.sheets.get("acknowledged"), Some(&12));
    assert_eq!(stats.lots.get("acknowledged"), Some(&3));
}

/// README's main-job command is `simulator/demo`, and on a machine without the build's C
/// dependencies it installs them before it builds: here `dpkg-query`, `apt-get`, `id` and
/// `cargo` are stand-ins on `PATH` that record their calls, and the script runs from a copy
/// of the repository's layout whose `fse-sim` records its arguments.
#[test]
fn the_readme_main_job_installs_the_build_dependencies_when_missing() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let first_command = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.lines().next())
        .unwrap();
    assert_eq!(first_command, "simulator/demo", "README's first command");

    let dir = tempfile::tempdir().unwrap();
    let (tree, stubs, log) = (
        dir.path().join("repo"),
        dir.path().join("bin"),
        dir.path().join("calls"),
    );
    std::fs::create_dir_all(tree.join("simulator")).unwrap();
    std::fs::create_dir_all(tree.join("target/debug")).unwrap();
    std::fs::create_dir_all(&stubs).unwrap();
    std::fs::copy(root.join("simulator/demo"), tree.join("simulator/demo")).unwrap();
    let stub = |path: std::path::PathBuf, body: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let record = |name: &str| format!("echo \"{name} $*\" >> '{}'", log.display());
    // Nothing is installed; every other stand-in succeeds.
    stub(
        stubs.join("dpkg-query"),
        &format!("{}\nexit 1", record("dpkg-query")),
    );
    stub(stubs.join("apt-get"), &record("apt-get"));
    stub(
        stubs.join("sudo"),
        &format!("{}\nexec \"$@\"", record("sudo")),
    );
    stub(stubs.join("id"), "echo 0");
    stub(stubs.join("cargo"), &record("cargo"));
    stub(tree.join("target/debug/fse-sim"), &record("fse-sim"));
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new("bash")
        .arg(tree.join("simulator/demo"))
        .args(["--sheets", "3"])
        .env("PATH", path)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls
        .lines()
        .filter(|l| !l.starts_with("dpkg-query"))
        .collect();
    assert_eq!(
        calls,
        [
            "apt-get update -qq",
            "apt-get install -y -qq libpcsclite-dev pkg-config",
            "cargo build -q --workspace --bins",
            "fse-sim demo --sheets 3",
        ],
        "the build's dependencies come before the build, the demo after it"
    );
}
