//! README's main job: `fse-sim demo` runs fsed on its embedded defaults
//! (virtual reader with simulated cards, spool transport, insurer simulator
//! on the spool) with no pcscd or broker involved, and prints the counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

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
