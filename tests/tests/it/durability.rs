//! Committed data is never lost unseen. fsed runs as a process (embedded virtual reader,
//! the simulated cards, the spool transport), started under umask 022:
//! - its WAL cut (to nothing, to half) while it is stopped after `kill -9`: fsed refuses to
//!   start (exit 3) naming what is missing, `fsed check-config` and `fsectl doctor` say the
//!   same, and `fsed accept-loss` lets it start again without handing a number out twice;
//! - after a clean stop the WAL is empty: cutting it loses nothing;
//! - the database, its WAL and shared-memory files and the mark are 0600, the directories
//!   it makes 0750;
//! - `fsectl backup` while sheets are being made, then `fsed restore` into a new state
//!   directory (every sheet of the backup there) and over the database it came from (the
//!   numbers handed out since are not handed out again).
//!
//! A test connection holding a read transaction keeps the WAL from being copied into the
//! database file (a checkpoint never goes past a reader), so that the WAL holds commits
//! when it is cut.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Proc, Rpc};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

/// One test's files: the slots and the cards' control socket in `dir`, fsed's state in
/// `dir/state` (made by fsed).
struct Setup {
    dir: tempfile::TempDir,
    _cards: Proc,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        common::write_test_pki(&dir.path().join("trust"));
        std::fs::write(dir.path().join("fsed.toml"), "").unwrap();
        // fsed under umask 022, whatever the test's own.
        let wrapper = dir.path().join("fsed-umask-022");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\numask 022\nexec '{}' \"$@\"\n",
                common::bin("fsed").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (cards, _) = common::start_fast_cards_on(dir.path(), &[]);
        Setup { dir, _cards: cards }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("fsed.sock")
    }

    fn args(&self, state: &Path) -> Vec<String> {
        let p = |p: PathBuf| p.display().to_string();
        let mut args = vec![
            "--config".into(),
            p(self.dir.path().join("fsed.toml")),
            "--state-dir".into(),
            p(state.to_path_buf()),
            "--socket".into(),
            p(self.socket()),
            "--cards".into(),
            "virtual".into(),
            "--trust-dir".into(),
            p(self.dir.path().join("trust")),
            "--transport".into(),
            "spool".into(),
        ];
        for i in 0..2 {
            args.push("--virtual-slot".into());
            args.push(common::virtual_slot_address(self.dir.path(), i));
        }
        args
    }

    /// fsed on `state`, ready, with its PIN verified.
    fn start(&self, state: &Path) -> (Proc, Rpc) {
        let wrapper = self.dir.path().join("fsed-umask-022");
        let args = self.args(state);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut fsed = Proc::start(wrapper.to_str().unwrap(), &args);
        fsed.wait_line("fsed ready", Duration::from_secs(30));
        let mut rpc = Rpc::connect(&self.socket(), Duration::from_secs(10));
        common::wait_cards(&mut rpc, 2);
        rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
        (fsed, rpc)
    }

    /// `fsed ARGS… COMMAND` on `state` run to its end (killed after 60 s: an fsed that starts
    /// when it should refuse fails the test instead of hanging it): exit code, stdout, stderr.
    fn run(&self, state: &Path, command: &[&str]) -> (i32, String, String) {
        let child = Command::new(self.dir.path().join("fsed-umask-022"))
            .args(self.args(state))
            .args(command)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if rx.recv_timeout(Duration::from_secs(60)).is_err() {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        });
        let out = child.wait_with_output().unwrap();
        let _ = tx.send(());
        watchdog.join().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Makes `n` sheets; returns their numbers.
fn make_sheets(rpc: &mut Rpc, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let r = rpc.ok(
                "fse.create",
                json!({"act": {"code": "G"}, "beneficiary": i % 2, "tiers_payant": {"amo": true}}),
            );
            r["number"].as_u64().unwrap()
        })
        .collect()
}

/// Every sheet fsed lists: id → (number, state).
fn listed(rpc: &mut Rpc) -> BTreeMap<i64, u64> {
    let mut all = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = rpc.ok("fse.list", json!({"limit": 1000, "after_id": after}));
        let page = page.as_array().unwrap();
        let Some(last) = page.last() else { break };
        after = last["id"].as_i64().unwrap();
        for s in page {
            all.insert(s["id"].as_i64().unwrap(), s["number"].as_u64().unwrap());
        }
    }
    all
}

/// A read transaction on the database that no checkpoint goes past, made after copying the
/// WAL into the file; closed without a checkpoint of its own.
fn hold_the_wal(db: &Path) -> Connection {
    let copy = Connection::open(db).unwrap();
    copy.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let reader = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    reader
        .set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM sheets", [], |r| r.get(0))
        .unwrap();
    drop(copy);
    reader
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn wal(state: &Path) -> PathBuf {
    state.join("fsed.db-wal")
}

#[test]
fn a_cut_wal_keeps_fsed_from_starting_and_says_what_is_lost() {
    for cut in ["zero", "half"] {
        let setup = Setup::new();
        let state = setup.dir.path().join("state");
        let (mut fsed, mut rpc) = setup.start(&state);
        // Sheets 1 to 10, in the database file (block 1–128 reserved).
        assert_eq!(make_sheets(&mut rpc, 10), (1..=10).collect::<Vec<_>>());
        let reader = hold_the_wal(&state.join("fsed.db"));
        // 300 more, 11 to 310, only in the WAL: blocks 129–256 and 257–384 reserved.
        let numbers = make_sheets(&mut rpc, 300);
        assert_eq!(numbers.last(), Some(&310));
        fsed.child.kill().unwrap(); // SIGKILL
        fsed.child.wait().unwrap();
        drop(reader);
        let size = std::fs::metadata(wal(&state)).unwrap().len();
        assert!(size > 0);
        let keep = if cut == "zero" { 0 } else { size / 2 };
        std::fs::OpenOptions::new()
            .write(true)
            .open(wal(&state))
            .unwrap()
            .set_len(keep)
            .unwrap();

        // fsed refuses to start, exit 3, naming the lost reservation: block 257–384 was
        // reserved at sheet 257, beyond half of the WAL's 300 sheets (257 − 10 = 247 > 150).
        let (code, _, err) = setup.run(&state, &[]);
        assert_eq!(code, 3, "{cut}: {err}");
        assert!(err.contains("committed data is missing"), "{cut}: {err}");
        assert!(
            err.contains("sheet numbers up to 384 were reserved"),
            "{cut}: {err}"
        );
        assert!(err.contains("fsed restore") && err.contains("fsed accept-loss"));
        if cut == "zero" {
            // The file holds what it held before the reader: block 1–128, sheets 1 to 10.
            assert!(
                err.contains("the database holds reservations up to 128 (sheets up to 10)"),
                "{err}"
            );
        }
        // check-config says the same.
        let (code, _, err) = setup.run(&state, &["check-config"]);
        assert_eq!(code, 3, "{cut}: {err}");
        assert!(
            err.contains("sheet numbers up to 384 were reserved"),
            "{err}"
        );
        // So does fsectl doctor, fsed not answering (exit 5).
        let out = Command::new(common::bin("fsectl"))
            .arg("--socket")
            .arg(setup.socket())
            .args(["doctor", "--database"])
            .arg(state.join("fsed.db"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(5), "{text}");
        assert!(
            text.contains("sheet numbers up to 384 were reserved") && text.contains("fsed restore"),
            "{text}"
        );

        // The loss accepted: fsed starts, and the next number is past the lost block: 385.
        let (code, out, err) = setup.run(&state, &["accept-loss"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("given up: practitioner"), "{out}");
        let (code, _, err) = setup.run(&state, &["check-config"]);
        assert_eq!(code, 0, "{err}");
        let (mut fsed, mut rpc) = setup.start(&state);
        assert_eq!(make_sheets(&mut rpc, 1), [385]);
        assert!(fsed.terminate().success());
    }
}

#[test]
fn after_a_clean_stop_a_cut_wal_loses_nothing_and_files_are_private() {
    let setup = Setup::new();
    let state = setup.dir.path().join("state");
    let (mut fsed, mut rpc) = setup.start(&state);
    make_sheets(&mut rpc, 10);
    let reader = hold_the_wal(&state.join("fsed.db"));
    make_sheets(&mut rpc, 290);
    let before = listed(&mut rpc);
    assert_eq!(before.len(), 300);

    // Private files whatever the umask (022 here): 0600; the directories fsed made 0750.
    let db = state.join("fsed.db");
    for file in [
        db.clone(),
        wal(&state),
        state.join("fsed.db-shm"),
        state.join("fsed.db.mark"),
    ] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    for d in ["", "spool", "spool/outbox", "spool/inbox"] {
        assert_eq!(mode(&state.join(d)), 0o750, "{d}");
    }

    // The WAL holds the last 290 sheets; the reader goes, and fsed stops at once.
    drop(reader);
    assert!(fsed.terminate().success());
    let left = std::fs::metadata(wal(&state)).map(|m| m.len()).unwrap_or(0);
    assert_eq!(left, 0, "the WAL after a clean stop");
    if wal(&state).exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(wal(&state))
            .unwrap()
            .set_len(0)
            .unwrap();
    }
    let (code, _, err) = setup.run(&state, &["check-config"]);
    assert_eq!(code, 0, "{err}");
    let (mut fsed, mut rpc) = setup.start(&state);
    assert_eq!(listed(&mut rpc), before);
    assert!(fsed.terminate().success());
}

#[test]
fn a_backup_made_under_load_restores_every_sheet_it_holds() {
    let setup = Setup::new();
    let state = setup.dir.path().join("state");
    let (mut fsed, mut rpc) = setup.start(&state);
    make_sheets(&mut rpc, 100);
    let before_backup = listed(&mut rpc);

    // 300 more made by another client while the backup is made.
    let socket = setup.socket();
    let load = std::thread::spawn(move || {
        let mut rpc = Rpc::connect(&socket, Duration::from_secs(10));
        make_sheets(&mut rpc, 300)
    });
    let copy = setup.dir.path().join("backup.db");
    let out = Command::new(common::bin("fsectl"))
        .arg("--socket")
        .arg(setup.socket())
        .args(["--json", "backup"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["integrity"], "ok");
    assert_eq!(mode(&copy), 0o600);
    let numbers = load.join().unwrap();
    assert_eq!(numbers.len(), 300);
    let all = listed(&mut rpc);
    assert_eq!(all.len(), 400);
    assert!(fsed.terminate().success());

    // Restored into a new state directory: the backup's sheets, which are every sheet made
    // before it and a run of those made during it, each as fsed had it.
    let fresh = setup.dir.path().join("fresh");
    let (code, out, err) = setup.run(&fresh, &["restore", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("the backup") && out.contains("holds sheets"),
        "{out}"
    );
    assert_eq!(mode(&fresh.join("fsed.db")), 0o600);
    let (mut restored, mut rpc) = setup.start(&fresh);
    let got = listed(&mut rpc);
    let held: u64 = made["sheets"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(got.len() as u64, held);
    assert!(before_backup.iter().all(|(id, n)| got.get(id) == Some(n)));
    let last = *got.keys().last().unwrap();
    let expected: BTreeMap<i64, u64> = all.range(..=last).map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got, expected, "the backup's sheets are fsed's first ones");
    assert!(restored.terminate().success());

    // Restored over the database it came from: the 400 sheets took numbers 1 to 400, in
    // blocks up to 4 × 128 = 512; the next sheet is 513 whatever the backup held.
    let (code, out, err) = setup.run(&state, &["restore", copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is kept as"), "{out}");
    let (mut fsed, mut rpc) = setup.start(&state);
    assert_eq!(listed(&mut rpc).len() as u64, held);
    assert_eq!(make_sheets(&mut rpc, 1), [513]);
    assert!(fsed.terminate().success());
}
