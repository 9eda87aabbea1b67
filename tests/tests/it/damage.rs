//! Bytes flipped in the database file while fsed is stopped: a sheet body and a signed lot.
//! At the next start fsed serves neither: `fse.list` keeps the damaged sheet in its place by
//! id, `fse.get` answers `STORED_ROW_DAMAGED`, the transport leaves the damaged lot unsent,
//! `fsectl verify` names both and exits 7, `fsectl doctor --thorough` fails on them, and
//! `fsed check-config` reads the file without changing it. Over fsed's embedded virtual
//! reader (Unix socket slots of the test's own) and the spool transport: no pcscd slot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// Runs fsectl with `--json` on fsed's socket in `dir`; returns (exit code, JSON printed).
fn fsectl_json(dir: &Path, args: &[&str]) -> (i32, Value) {
    let out = Command::new(common::bin("fsectl"))
        .arg("--socket")
        .arg(dir.join("fsed.sock"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "fsectl {args:?}: {e}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// Flips one bit in the middle of every place `needle` is stored in the file at `path`;
/// returns how many places.
fn flip_everywhere(path: &Path, needle: &[u8]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let at: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    for i in &at {
        bytes[i + needle.len() / 2] ^= 0x01;
    }
    std::fs::write(path, bytes).unwrap();
    at.len()
}

/// fsed as `common::start_fsed_virtual` starts it in `dir`, its log (standard error) in
/// `log`; killed on drop.
struct Fsed(Child);

impl Fsed {
    fn start(dir: &Path, log: &Path) -> Fsed {
        let slots: Vec<String> = (0..2)
            .map(|i| common::virtual_slot_address(dir, i))
            .collect();
        let child = Command::new(common::bin("fsed"))
            .arg("--config")
            .arg(dir.join("fsed.toml"))
            .arg("--state-dir")
            .arg(dir)
            .arg("--socket")
            .arg(dir.join("fsed.sock"))
            .args(["--cards", "virtual", "--transport", "spool", "--trust-dir"])
            .arg(dir.join("trust"))
            .args(["--virtual-slot", &slots[0], "--virtual-slot", &slots[1]])
            .env("FSED_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        Fsed(child)
    }

    /// SIGTERM, then its exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        common::wait_for("fsed to stop", Duration::from_secs(20), || {
            self.0.try_wait().unwrap()
        })
    }
}

impl Drop for Fsed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sheet(key: &str) -> Value {
    json!({"act": {"code": "G"}, "beneficiary": 0, "tiers_payant": {"amo": true}, "idempotency_key": key})
}

/// What the first run left: the lot's sheets, the lot, the sheet outside it and the lot's
/// signature.
struct FirstRun {
    ids: Vec<i64>,
    lot_id: String,
    loose: i64,
    signature: [u8; 64],
}

/// First run: three sheets in a lot, signed, its sending held back (`outbox` made a file),
/// then a fourth sheet outside any lot; fsed stopped.
fn first_run(d: &Path, outbox: &Path) -> FirstRun {
    let (mut fsed, mut rpc) = common::start_fsed_virtual(d, 2, "", &[]);
    let _cards = common::start_fast_cards_on(d, &[]).0;
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    std::fs::remove_dir(outbox).unwrap();
    std::fs::write(outbox, b"not a directory").unwrap();
    let ids: Vec<i64> = (1..=3)
        .map(|i| {
            rpc.ok("fse.create", sheet(&format!("d-{i}")))["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    rpc.ok("lots.close", json!({}));
    let lot_id = common::wait_for("the lot signed", Duration::from_secs(30), || {
        let lots = rpc.ok("lots.list", json!({}));
        let lot = &lots.as_array()?.first()?.clone();
        (lot["state"] == json!("signed")).then(|| lot["id"].as_str().unwrap().to_string())
    });
    let loose = rpc.ok("fse.create", sheet("d-4"))["id"].as_i64().unwrap();
    let signed = rpc.ok("lots.get", json!({"lot_id": lot_id}));
    assert_eq!(signed["sheet_ids"], json!(ids), "{signed}");
    let signed_der = hex::decode(signed["signed_lot"].as_str().unwrap()).unwrap();
    let signature = fse_formats::lot::SignedLot::from_der(&signed_der)
        .unwrap()
        .signature;
    assert!(fsed.terminate().success());
    drop(rpc);
    FirstRun {
        ids,
        lot_id,
        loose,
        signature,
    }
}

/// Flips, in the stopped fsed's database, the loose sheet's body and the lot's signature.
fn damage_the_file(d: &Path, loose: i64, signature: &[u8]) {
    // Stopped. What the WAL still holds is copied into the file (as the next open would),
    // so that the bytes flipped are the ones read. The loose sheet's DER is in its body only
    // (it is in no lot); the lot's signature is in its row only (its DER and its CMS).
    let db = d.join("fsed.db");
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    assert!(!d.join("fsed.db-wal").exists(), "the WAL is gone");
    let loose_der: Vec<u8> =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
            .query_row(
                "SELECT der FROM sheet_bodies WHERE sheet_id = ?1",
                [loose],
                |r| r.get(0),
            )
            .unwrap();
    assert!(flip_everywhere(&db, &loose_der) >= 1, "the sheet's body");
    assert!(flip_everywhere(&db, signature) >= 1, "the lot's signature");
}

/// `fsed check-config` on the damaged file.
fn check_config_leaves_the_file_alone(d: &Path) {
    let db = d.join("fsed.db");
    // check-config opens it read-only: sound to SQLite's quick check, and not changed.
    let before = std::fs::read(&db).unwrap();
    let trust = d.join("trust");
    let out = Command::new(common::bin("fsed"))
        .args(["--config", "/dev/null", "--state-dir"])
        .arg(d)
        .arg("--trust-dir")
        .arg(&trust)
        .arg("check-config")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("sound (quick check passed)"), "{said}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "check-config changed the file"
    );
}

/// The API on the second run: the damage named by id, never served.
fn the_api_names_the_damage(rpc: &mut common::Rpc, first: &FirstRun) {
    let FirstRun {
        ids, lot_id, loose, ..
    } = first;
    let loose = *loose;
    // The page: the three sheets of the lot, then the loose one in its place by id.
    let page = rpc.ok("fse.list", json!({"limit": 10}));
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 4, "{page:?}");
    for (entry, id) in page.iter().zip(ids) {
        assert_eq!(
            (&entry["id"], &entry["state"]),
            (&json!(id), &json!("signed"))
        );
    }
    assert_eq!(
        page[3],
        json!({"id": loose, "damaged": "checksum mismatch"}),
        "{page:?}"
    );
    let e = rpc.call("fse.get", json!({"id": loose}));
    assert_eq!(e["error"]["code"], json!(1031), "{e}");
    assert_eq!(
        e["error"]["data"]["damaged"],
        json!({"kind": "sheet", "id": loose.to_string(), "reason": "checksum mismatch"}),
        "{e}"
    );
    let e = rpc.call("lots.get", json!({"lot_id": lot_id}));
    assert_eq!(
        e["error"]["data"]["name"],
        json!("STORED_ROW_DAMAGED"),
        "{e}"
    );
    let lots = rpc.ok("lots.list", json!({}));
    assert_eq!(
        lots,
        json!([{"id": lot_id, "damaged": "checksum mismatch"}])
    );
    // The lot's sheets themselves are sound.
    let first = rpc.ok("fse.get", json!({"id": ids[0]}));
    assert_eq!(first["lot_id"], json!(lot_id), "{first}");
}

/// `fsectl verify` and the doctor, quick and thorough, on the second run.
fn fsectl_names_the_damage(d: &Path, first: &FirstRun) {
    let (loose, lot_id) = (first.loose, &first.lot_id);
    // fsectl verify: 3 sheets in the lot + 1 loose = 4 sheets, 1 lot checked; the two
    // damaged named; exit 7.
    let (code, report) = fsectl_json(d, &["verify"]);
    assert_eq!(code, 7, "{report}");
    assert_eq!((&report["sheets"], &report["lots"]), (&json!(4), &json!(1)));
    assert_eq!(
        report["damaged"],
        json!([
            {"kind": "sheet", "id": loose.to_string(), "reason": "checksum mismatch"},
            {"kind": "lot", "id": lot_id, "reason": "checksum mismatch"},
        ]),
        "{report}"
    );

    // The doctor: by default it says only what it ran; thorough, it names the rows (exit 5).
    let (_, quick) = fsectl_json(d, &["doctor"]);
    let database = quick["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "database")
        .unwrap();
    assert_eq!(database["detail"], json!("quick check passed"), "{quick}");
    let (code, thorough) = fsectl_json(d, &["doctor", "--thorough"]);
    assert_eq!(code, 5, "{thorough}");
    let checks = thorough["checks"].as_array().unwrap();
    let database = checks.iter().find(|c| c["check"] == "database").unwrap();
    assert_eq!(
        database["detail"],
        json!("integrity check passed"),
        "{thorough}"
    );
    let rows = checks.iter().find(|c| c["check"] == "stored_rows").unwrap();
    assert_eq!(rows["status"], json!("failure"), "{thorough}");
    let detail = rows["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("2 damaged")
            && detail.contains(&format!("sheet {loose}: checksum mismatch"))
            && detail.contains(&format!("lot {lot_id}: checksum mismatch")),
        "{detail}"
    );
}

#[test]
fn damaged_rows_are_reported_by_id_and_never_served_or_sent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let outbox = d.join("spool/outbox");
    let first = first_run(d, &outbox);
    damage_the_file(d, first.loose, &first.signature);
    std::fs::remove_file(&outbox).unwrap();
    check_config_leaves_the_file_alone(d);

    // Second run: the damage is named, never served, never sent. The transport's first turn
    // meets the damaged lot and says so in the log.
    let log = d.join("second-run.log");
    let mut fsed = Fsed::start(d, &log);
    let mut rpc = common::Rpc::connect(&d.join("fsed.sock"), Duration::from_secs(30));
    common::wait_for("the damaged lot's alarm", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("a stored row is damaged"))
            .map(str::to_string)
    });
    let lot_file = outbox.join(format!("{}.lot", first.lot_id));
    let sent: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(sent.is_empty(), "{lot_file:?}: the outbox holds {sent:?}");

    the_api_names_the_damage(&mut rpc, &first);
    fsectl_names_the_damage(d, &first);
    assert!(fsed.stop().success());
}
