//! Store tests on real SQLite files.

use fse_formats::ack::{Arl, ArlStatus, Rejection};

use super::*;

fn open(dir: &tempfile::TempDir) -> Queue {
    Queue::open(&dir.path().join("q.db")).unwrap()
}

fn add(q: &mut Queue, pid: &str, dest: &str, key: Option<&str>) -> SheetRow {
    let number = q.allocate_sheet_number(pid).unwrap();
    let new = NewSheet {
        practitioner_id: pid.into(),
        number,
        destination: dest.into(),
        idempotency_key: key.map(str::to_string),
        der: vec![0x30, 0],
        json: "{}".into(),
        created_at: "20261122100000Z".into(),
    };
    match q.insert_sheet(&new).unwrap() {
        Inserted::New(r) | Inserted::Existing(r) => r,
    }
}

fn arl(lot: &str, status: ArlStatus, rejections: Vec<Rejection>) -> Arl {
    Arl { lot_id: lot.into(), merkle_root: hex::encode([0u8; 32]), status, insurer: "x".into(), received_at: "20261122".into(), rejections }
}

#[test]
fn pragmas_are_wal_and_full() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir);
    assert_eq!(q.pragma("journal_mode").unwrap(), "wal");
    assert_eq!(q.pragma("synchronous").unwrap(), "2");
    assert_eq!(q.pragma("user_version").unwrap(), "1");
}

#[test]
fn full_lifecycle_to_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let s = add(&mut q, "8A", "017510001", None);
    assert_eq!(s.state, SheetState::Accepted);
    let lots = q.close_lots(None, 10, "20261122").unwrap();
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0].id, "8A-00000001");
    assert_eq!(q.get_sheet(s.id).unwrap().unwrap().state, SheetState::InLot);
    assert_eq!(q.lots_to_sign(None).unwrap().len(), 1);
    q.mark_lot_signed("8A-00000001", b"signed").unwrap();
    assert!(matches!(q.mark_lot_signed("8A-00000001", b"again"), Err(QueueError::InvalidTransition { .. })));
    assert_eq!(q.lots_to_send().unwrap()[0].signed_der.as_deref(), Some(&b"signed"[..]));
    assert!(q.mark_lot_sent("8A-00000001").unwrap());
    assert!(!q.mark_lot_sent("8A-00000001").unwrap());
    assert_eq!(q.record_arl(&arl("8A-00000001", ArlStatus::Positive, vec![]), b"arl").unwrap(), ArlOutcome::Applied);
    assert_eq!(q.record_arl(&arl("8A-00000001", ArlStatus::Negative, vec![]), b"arl").unwrap(), ArlOutcome::Duplicate);
    assert_eq!(q.get_sheet(s.id).unwrap().unwrap().state, SheetState::Acknowledged);
    assert_eq!(q.get_lot("8A-00000001").unwrap().unwrap().state, LotState::Acknowledged);
    assert_eq!(q.stats().unwrap().sheets.get("acknowledged"), Some(&1));
    let kinds: Vec<String> = q.events_since(0, 100).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["sheet.accepted", "lot.closed", "lot.signed", "lot.sent", "arl.positive"]);
}

#[test]
fn negative_arl_records_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let a = add(&mut q, "8A", "D", None);
    let b = add(&mut q, "8A", "D", None);
    q.close_lots(None, 10, "t").unwrap();
    q.mark_lot_signed("8A-00000001", b"s").unwrap();
    let rej = vec![Rejection { sheet_number: Some(b.number), code: "SHARES".into(), reason: "AMO share".into() }];
    q.record_arl(&arl("8A-00000001", ArlStatus::Negative, rej), b"arl").unwrap();
    let (a, b) = (q.get_sheet(a.id).unwrap().unwrap(), q.get_sheet(b.id).unwrap().unwrap());
    assert_eq!((a.state, b.state), (SheetState::Rejected, SheetState::Rejected));
    assert_eq!(a.reason, None);
    assert_eq!(b.reason.as_deref(), Some("SHARES: AMO share"));
    assert!(matches!(q.record_arl(&arl("nope", ArlStatus::Positive, vec![]), b""), Err(QueueError::NotFound(_))));
}

#[test]
fn idempotent_insert_and_lot_grouping() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let first = add(&mut q, "8A", "D1", Some("k"));
    let again = add(&mut q, "8A", "D1", Some("k"));
    assert_eq!(first.id, again.id);
    for _ in 0..4 {
        add(&mut q, "8A", "D1", None);
    }
    add(&mut q, "8A", "D2", None);
    add(&mut q, "8B", "D1", None);
    let lots = q.close_lots(None, 2, "t").unwrap();
    let shape: Vec<(String, u64)> = lots.iter().map(|l| (l.id.clone(), l.sheet_count)).collect();
    assert_eq!(shape, [("8A-00000001".into(), 2), ("8A-00000002".into(), 2), ("8A-00000003".into(), 1), ("8A-00000004".into(), 1), ("8B-00000001".into(), 1)]);
    assert!(q.close_lots(None, 2, "t").unwrap().is_empty());
}

#[test]
fn numbers_survive_reopen_and_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    assert_eq!(q.allocate_sheet_number("8A").unwrap(), 1);
    let s = add(&mut q, "8A", "D", None);
    assert_eq!(s.number, 2);
    drop(q);
    let mut q = open(&dir);
    assert_eq!(q.allocate_sheet_number("8A").unwrap(), 3);
    assert_eq!(q.get_sheet(s.id).unwrap().unwrap(), s);
}

#[test]
fn a_corrupt_file_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = Queue::open(&path).err().unwrap();
    assert!(matches!(err, QueueError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}
