//! Damaged rows: caught by their checksum or their decoding, reported by id, never served.

use std::path::PathBuf;

use ed25519_dalek::{Signer, SigningKey};
use fse_formats::fse::CareSheet;
use fse_formats::lot::{leaves, LotEntry, LotHeader, SignedLot, SALT_LEN};
use rusqlite::params;

use super::*;

/// The practitioner of `CareSheet::sample`.
const PID: &str = "810101234567";

/// A sheet's or a lot's own time.
fn t(text: &str) -> CompactTime {
    text.parse().unwrap()
}

/// A practitioner.
fn p(id: &str) -> PractitionerId {
    PractitionerId::new(id)
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("q.db")
}

fn add(q: &mut Queue, number: u64) -> SheetRow {
    let mut sheet = CareSheet::sample(number);
    sheet.number = number;
    let new = NewSheet {
        practitioner_id: PID.into(),
        number,
        destination: "D".into(),
        der: sheet.to_der().unwrap(),
        created_at: t("20261122100000Z"),
        ..Default::default()
    };
    match q.insert_sheet(&new).unwrap() {
        Inserted::New(r) => r,
        Inserted::Existing(r) => panic!("unexpected existing sheet {r:?}"),
    }
}

/// Sheets 1..=n in one lot, signed for real (Ed25519 over the header, Merkle root over the
/// stored sheets): returns the lot id, the sheets and the signed lot's DER.
fn signed_lot(q: &mut Queue, n: u64) -> (LotId, Vec<SheetRow>, Vec<u8>) {
    let sheets: Vec<SheetRow> = (1..=n).map(|i| add(q, i)).collect();
    let lots = q.close_lots(None, 100, t("20261122110000Z")).unwrap();
    assert_eq!(lots.len(), 1);
    let lot = &lots[0];
    let key = SigningKey::from_bytes(&[7; 32]);
    let entries: Vec<LotEntry> = sheets
        .iter()
        .enumerate()
        .map(|(i, s)| LotEntry {
            salt: [i as u8; SALT_LEN],
            sheet: s.der.clone(),
        })
        .collect();
    let header = LotHeader {
        lot_id: lot.id.to_string(),
        number: lot.number,
        practitioner_id: PID.into(),
        destination: "D".into(),
        sheet_count: n,
        merkle_root: fse_formats::merkle::root(&leaves(&entries)),
        closed_at: "20261122110000Z".into(),
        cps_serial: "CPS0001".into(),
        signer_key: key.verifying_key().to_bytes(),
        attachments: Vec::new(),
    };
    let signature = key.sign(&header.to_der().unwrap()).to_bytes();
    let der = SignedLot {
        header,
        signature,
        entries,
        signer_certificate: None,
    }
    .to_der()
    .unwrap();
    q.mark_lot_signed(&lot.id, &der).unwrap();
    (lot.id.clone(), sheets, der)
}

fn damaged(kind: &'static str, id: impl ToString, reason: &str) -> DamagedRow {
    DamagedRow {
        kind,
        id: id.to_string(),
        reason: reason.into(),
    }
}

/// Flips one byte of the database file in the middle of the first place `needle` is
/// stored; the file must be closed (its WAL checkpointed into it).
fn flip_in_file(path: &std::path::Path, needle: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the stored bytes are in the file");
    bytes[at + needle.len() / 2] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_sound_store_verifies_and_serves_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&db(&dir)).unwrap();
    let (lot_id, sheets, der) = signed_lot(&mut q, 3);
    let report = q.verify().unwrap();
    // 3 sheets, 1 lot, no DRE lot.
    assert_eq!((report.sheets, report.lots, report.dre_lots), (3, 1, 0));
    assert_eq!(report.damaged, []);
    assert_eq!(q.get_lot(&lot_id).unwrap().unwrap().signed_der, Some(der));
    assert_eq!(
        q.get_sheet(sheets[1].id).unwrap().unwrap().der,
        sheets[1].der
    );
    assert_eq!(q.integrity_check().unwrap(), Ok(()));
}

#[test]
fn a_sheet_body_changed_by_sql_is_reported_by_id_and_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&db(&dir)).unwrap();
    let sheets: Vec<SheetRow> = (1..=3).map(|i| add(&mut q, i)).collect();
    let mut der = sheets[1].der.clone();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    q.conn
        .execute(
            "UPDATE sheet_bodies SET der = ?2 WHERE sheet_id = ?1",
            params![sheets[1].id, der],
        )
        .unwrap();
    let want = damaged("sheet", sheets[1].id, "checksum mismatch");
    match q.get_sheet(sheets[1].id) {
        Err(QueueError::Damaged(d)) => assert_eq!(d, want),
        other => panic!("damaged expected, got {other:?}"),
    }
    // The page holds the two sound sheets and the damaged one in its place.
    let page = q.list_sheets_checked(None, 10, SheetId(0)).unwrap();
    assert_eq!(page.len(), 3);
    assert_eq!(page[0].as_ref().unwrap().id, sheets[0].id);
    assert_eq!(page[1].as_ref().unwrap_err(), &want);
    assert_eq!(page[2].as_ref().unwrap().id, sheets[2].id);
    assert!(matches!(
        q.list_sheets(None, 10, SheetId(0)),
        Err(QueueError::Damaged(d)) if d == want
    ));
    assert_eq!(q.verify().unwrap().damaged, [want]);
}

#[test]
fn a_body_moved_to_another_row_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&db(&dir)).unwrap();
    let a = add(&mut q, 1);
    let b = add(&mut q, 2);
    // Sheet a gets sheet b's body and checksum: both are b's, but the row is a's.
    q.conn
        .execute(
            "UPDATE sheet_bodies SET (der, checksum) = (SELECT der, checksum FROM sheet_bodies WHERE sheet_id = ?2) WHERE sheet_id = ?1",
            params![a.id, b.id],
        )
        .unwrap();
    assert!(matches!(
        q.get_sheet(a.id),
        Err(QueueError::Damaged(d)) if d == damaged("sheet", a.id, "checksum mismatch")
    ));
    assert_eq!(q.get_sheet(b.id).unwrap().unwrap().der, b.der);
}

#[test]
fn columns_that_do_not_decode_are_reported_in_listings() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&db(&dir)).unwrap();
    let sheets: Vec<SheetRow> = (1..=4).map(|i| add(&mut q, i)).collect();
    // A number that is text, a state that is not UTF-8, a checksum that is not a blob.
    q.conn
        .execute_batch(&format!(
            "UPDATE sheets SET number = 'x' WHERE id = {};
             UPDATE sheets SET practitioner_id = CAST(x'ff00' AS TEXT) WHERE id = {};
             UPDATE sheet_bodies SET checksum = 12 WHERE sheet_id = {};",
            sheets[0].id, sheets[1].id, sheets[2].id
        ))
        .unwrap();
    let page = q.list_sheets_checked(None, 10, SheetId(0)).unwrap();
    let ids: Vec<Result<SheetId, String>> = page
        .iter()
        .map(|r| match r {
            Ok(row) => Ok(row.id),
            Err(d) => Err(d.id.clone()),
        })
        .collect();
    assert_eq!(
        ids,
        [
            Err(sheets[0].id.to_string()),
            Err(sheets[1].id.to_string()),
            Err(sheets[2].id.to_string()),
            Ok(sheets[3].id),
        ]
    );
    for (i, s) in sheets[..3].iter().enumerate() {
        match q.get_sheet(s.id) {
            Err(QueueError::Damaged(d)) => assert_eq!(d.id, s.id.to_string(), "{i}: {d:?}"),
            other => panic!("{i}: damaged expected, got {other:?}"),
        }
    }
    assert_eq!(q.verify().unwrap().damaged.len(), 3);
}

#[test]
fn a_signed_lot_changed_by_sql_is_not_sent_and_verify_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&db(&dir)).unwrap();
    let (lot_id, _, der) = signed_lot(&mut q, 2);
    let mut changed = der.clone();
    changed[der.len() / 2] ^= 0x01;
    q.conn
        .execute(
            "UPDATE lots SET signed_der = ?2 WHERE id = ?1",
            params![lot_id, changed],
        )
        .unwrap();
    let want = damaged("lot", &lot_id, "checksum mismatch");
    assert!(matches!(q.get_lot(&lot_id), Err(QueueError::Damaged(d)) if d == want));
    assert!(matches!(q.lot_cms(&lot_id), Err(QueueError::Damaged(d)) if d == want));
    assert_eq!(q.lots_to_send_checked().unwrap(), [Err(want.clone())]);
    assert_eq!(q.list_lots_checked(10).unwrap(), [Err(want.clone())]);
    assert_eq!(q.verify().unwrap().damaged, [want]);
}

#[test]
fn verify_recomputes_each_lot_against_its_signature_and_stored_sheets() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&db(&dir)).unwrap();
    let (lot_id, sheets, der) = signed_lot(&mut q, 2);
    // A signature byte changed with a checksum to match: only the signature check sees it.
    let mut lot = SignedLot::from_der(&der).unwrap();
    lot.signature[0] ^= 0x01;
    let forged = lot.to_der().unwrap();
    let checksum = lot_checksum(&lot_id, Some(&forged), None);
    q.conn
        .execute(
            "UPDATE lots SET signed_der = ?2, checksum = ?3 WHERE id = ?1",
            params![lot_id, forged, checksum.as_slice()],
        )
        .unwrap();
    let report = q.verify().unwrap();
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(report.damaged[0].id, lot_id.as_str());
    assert!(
        report.damaged[0].reason.contains("signature"),
        "{:?}",
        report.damaged[0]
    );
    // The lot back as signed, and a stored sheet that is not the one in the lot (both
    // decode and have matching checksums): the lot is named.
    let checksum = lot_checksum(&lot_id, Some(&der), None);
    q.conn
        .execute(
            "UPDATE lots SET signed_der = ?2, checksum = ?3 WHERE id = ?1",
            params![lot_id, der, checksum.as_slice()],
        )
        .unwrap();
    let other = CareSheet::sample(9).to_der().unwrap();
    let checksum = sheet_checksum(sheets[1].id.get(), &other, None);
    q.conn
        .execute(
            "UPDATE sheet_bodies SET der = ?2, checksum = ?3 WHERE sheet_id = ?1",
            params![sheets[1].id, other, checksum.as_slice()],
        )
        .unwrap();
    let report = q.verify().unwrap();
    assert_eq!(
        report.damaged,
        [damaged(
            "lot",
            &lot_id,
            &format!("stored sheet {} is not in the signed lot", sheets[1].id)
        )]
    );
}

#[test]
fn bytes_flipped_in_the_file_are_reported_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (lot_id, sheets, lot_der, loose) = {
        let mut q = Queue::open(&path).unwrap();
        let (lot_id, sheets, der) = signed_lot(&mut q, 2);
        let loose = add(&mut q, 3);
        (lot_id, sheets, der, loose)
    };
    // Closed: the WAL is in the file. The lot's sheets are also inside its DER, so the
    // loose sheet's body is flipped (its own bytes: number 3 is in no lot), and the lot's
    // signature (64 bytes at the end of its header part, found in the lot's own row).
    flip_in_file(&path, &loose.der);
    let lot = SignedLot::from_der(&lot_der).unwrap();
    flip_in_file(&path, &lot.signature);
    let q = Queue::open(&path).unwrap();
    assert!(matches!(
        q.get_sheet(loose.id),
        Err(QueueError::Damaged(d)) if d == damaged("sheet", loose.id, "checksum mismatch")
    ));
    assert!(matches!(
        q.get_lot(&lot_id),
        Err(QueueError::Damaged(d)) if d == damaged("lot", &lot_id, "checksum mismatch")
    ));
    assert_eq!(
        q.get_sheet(sheets[0].id).unwrap().unwrap().der,
        sheets[0].der
    );
    let report = q.verify().unwrap();
    assert_eq!(
        report.damaged,
        [
            damaged("sheet", loose.id, "checksum mismatch"),
            damaged("lot", &lot_id, "checksum mismatch"),
        ]
    );
}

#[test]
fn the_migration_fills_the_checksums_of_rows_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let (lot_id, sheets) = {
        let mut q = Queue::open(&path).unwrap();
        let (lot_id, sheets, _) = signed_lot(&mut q, 2);
        // As before the checksums: none stored, at the version before theirs (the migrations
        // after it only add columns and tables of their own: taken away too, and made again).
        let checksums = schema::MIGRATIONS
            .iter()
            .position(|m| m.contains("ADD COLUMN checksum"))
            .unwrap();
        q.conn
            .execute_batch(&format!(
                "ALTER TABLE sheet_bodies DROP COLUMN checksum;
                 ALTER TABLE lots DROP COLUMN checksum;
                 ALTER TABLE dre_lots DROP COLUMN checksum;
                 ALTER TABLE lots DROP COLUMN sent_at;
                 ALTER TABLE lots DROP COLUMN resends;
                 DROP TABLE return_dead_letters;
                 DROP TABLE attachments;
                 DROP TABLE rights_cache;
                 PRAGMA user_version = {checksums};"
            ))
            .unwrap();
        (lot_id, sheets)
    };
    let q = Queue::open(&path).unwrap();
    assert_eq!(
        q.pragma("user_version").unwrap(),
        schema::latest_version().to_string()
    );
    assert_eq!(q.verify().unwrap().damaged, []);
    let stored: Vec<u8> = q
        .conn
        .query_row(
            "SELECT checksum FROM sheet_bodies WHERE sheet_id = ?1",
            [sheets[0].id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        stored,
        sheet_checksum(sheets[0].id.get(), &sheets[0].der, None)
    );
    assert!(q.get_lot(&lot_id).unwrap().is_some());
}

#[test]
fn check_file_reads_without_creating_or_changing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    assert!(matches!(check_file(&path), Err(QueueError::Open { .. })));
    assert!(!path.exists(), "check_file made the file");
    {
        let mut q = Queue::open(&path).unwrap();
        add(&mut q, 1);
    }
    let before = std::fs::read(&path).unwrap();
    let beside = |suffix: &str| dir.path().join(format!("q.db{suffix}")).exists();
    assert!(!beside("-wal") && !beside("-shm"), "closed: no WAL left");
    let found = check_file(&path).unwrap();
    assert!(!beside("-wal") && !beside("-shm"), "check_file left a WAL");
    // The high-water look (start, check-config, the offline doctor) leaves none either: files
    // made by root there could not be opened by fsed's own user.
    let seen = Queue::open_to_look(&path).unwrap().high_water().unwrap();
    assert!(seen.last_event > 0);
    assert!(
        !beside("-wal") && !beside("-shm"),
        "open_to_look left a WAL"
    );
    assert_eq!(found.version, schema::latest_version());
    assert_eq!(found.latest, schema::latest_version());
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "check_file changed the file"
    );
    // Another program's file is named as such.
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); PRAGMA user_version = 3;")
        .unwrap();
    assert!(matches!(
        check_file(&other),
        Err(QueueError::Corrupt { .. })
    ));
}

#[test]
fn a_sheet_sent_again_in_a_later_lot_leaves_both_lots_sound() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&db(&dir)).unwrap();
    let (lot_id, sheets, _) = signed_lot(&mut q, 2);
    q.mark_lot_sent(&lot_id).unwrap();
    // The insurer rejects sheet number 2 (the second sheet): it waits, is sent again.
    let arl = fse_formats::ack::Arl {
        lot_id: lot_id.to_string(),
        merkle_root: hex::encode([0u8; 32]),
        status: fse_formats::ack::ArlStatus::Negative,
        insurer: "011751234".into(),
        received_at: "20261122120000Z".into(),
        rejections: vec![fse_formats::ack::Rejection {
            sheet_number: Some(2),
            code: "X".into(),
            reason: "X wrong".into(),
        }],
    };
    q.record_arl(&arl, b"arl").unwrap();
    q.resubmit_sheet(sheets[1].id).unwrap();
    assert_eq!(q.lot_sheet_ids(&lot_id).unwrap().len(), 1, "moved out");
    // The first lot's entries still hold both sheets; the one left stored in it is one of
    // them: nothing is damaged.
    assert_eq!(q.verify().unwrap().damaged, []);
}

#[test]
fn a_retry_that_finds_a_damaged_sheet_is_told_which() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&db(&dir)).unwrap();
    let mut sheet = CareSheet::sample(1);
    sheet.number = 1;
    let new = NewSheet {
        practitioner_id: PID.into(),
        number: 1,
        destination: "D".into(),
        idempotency_key: Some("k".into()),
        der: sheet.to_der().unwrap(),
        created_at: t("20261122100000Z"),
        ..Default::default()
    };
    let Inserted::New(row) = q.insert_sheet(&new).unwrap() else {
        panic!("a new sheet expected");
    };
    q.conn
        .execute(
            "UPDATE sheet_bodies SET checksum = zeroblob(32) WHERE sheet_id = ?1",
            [row.id],
        )
        .unwrap();
    let want = damaged("sheet", row.id, "checksum mismatch");
    for found in [
        q.find_by_idempotency_key(Some(&p(PID)), "k", None),
        q.find_by_idempotency_key(None, "k", None),
    ] {
        assert!(
            matches!(found, Err(QueueError::Damaged(ref d)) if *d == want),
            "{found:?}"
        );
    }
    assert!(matches!(q.insert_sheet(&new), Err(QueueError::Damaged(d)) if d == want));
}
