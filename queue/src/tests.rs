//! Store tests on real SQLite files in temporary directories.

use std::path::{Path, PathBuf};

use fse_formats::ack::{Arl, ArlStatus, Rejection};

use super::*;

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("q.db")
}

fn open(dir: &tempfile::TempDir) -> Queue {
    Queue::open(&db(dir)).unwrap()
}

fn new_sheet(pid: &str, number: u64, dest: &str, key: Option<&str>) -> NewSheet {
    NewSheet {
        practitioner_id: pid.into(),
        number,
        destination: dest.into(),
        idempotency_key: key.map(str::to_string),
        der: fse_formats::fse::CareSheet::sample(number)
            .to_der()
            .unwrap(),
        json: serde_json::to_string(&fse_formats::fse::CareSheet::sample(number)).unwrap(),
        created_at: "20261122100000Z".into(),
        ..Default::default()
    }
}

/// One date's participation of a new sheet: `acts` participations, `cents` withheld.
fn w(date: &str, acts: u32, cents: u64) -> Withheld {
    Withheld {
        care_date: date.into(),
        acts,
        cents,
    }
}

/// A line of a beneficiary's history.
fn rec(date: &str, professional: Option<&str>, acts: Option<u32>, cents: u64) -> PfRecord {
    PfRecord {
        care_date: date.into(),
        professional: professional.map(str::to_string),
        acts,
        cents,
    }
}

/// Allocates a number and inserts a new sheet.
fn add(q: &mut Queue, pid: &str, dest: &str) -> SheetRow {
    let number = q.allocate_sheet_number(pid).unwrap();
    match q.insert_sheet(&new_sheet(pid, number, dest, None)).unwrap() {
        Inserted::New(r) => r,
        Inserted::Existing(r) => panic!("unexpected existing sheet {r:?}"),
    }
}

fn arl(lot: &str, status: ArlStatus, rejections: Vec<Rejection>) -> Arl {
    Arl {
        lot_id: lot.into(),
        merkle_root: hex::encode([0u8; 32]),
        status,
        insurer: "011751234".into(),
        received_at: "20261122120000Z".into(),
        rejections,
    }
}

fn rejection(sheet_number: Option<u64>, code: &str) -> Rejection {
    Rejection {
        sheet_number,
        code: code.into(),
        reason: format!("{code} wrong"),
    }
}

fn sheet(q: &Queue, id: i64) -> SheetRow {
    q.get_sheet(id).unwrap().unwrap()
}

fn lot(q: &Queue, id: &str) -> LotRow {
    q.get_lot(id).unwrap().unwrap()
}

fn kinds(q: &Queue) -> Vec<String> {
    q.events_since(0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// Everything the store shows, to compare before and after.
#[derive(Debug, PartialEq)]
struct Snapshot {
    sheets: Vec<SheetRow>,
    lots: Vec<LotRow>,
    events: Vec<EventRow>,
    stats: Stats,
    acks: Vec<Option<AckRow>>,
}

fn snapshot(q: &Queue) -> Snapshot {
    let lots = q.list_lots(1000).unwrap();
    Snapshot {
        sheets: q.list_sheets(None, 1000, 0).unwrap(),
        acks: lots.iter().map(|l| q.get_ack(&l.id).unwrap()).collect(),
        lots,
        events: q.events_since(0, 1000).unwrap(),
        stats: q.stats().unwrap(),
    }
}

/// One lot of `n` sheets for practitioner 8A, signed; returns the lot id and sheets.
fn signed_lot(q: &mut Queue, n: usize) -> (String, Vec<SheetRow>) {
    let sheets: Vec<SheetRow> = (0..n).map(|_| add(q, "8A", "D")).collect();
    let lots = q.close_lots(None, 100, "20261122110000Z").unwrap();
    assert_eq!(lots.len(), 1);
    q.mark_lot_signed(&lots[0].id, b"signed lot").unwrap();
    (lots[0].id.clone(), sheets)
}

#[test]
fn wal_and_synchronous_full_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir);
    assert_eq!(q.pragma("journal_mode").unwrap(), "wal");
    assert_eq!(q.pragma("synchronous").unwrap(), "2", "2 is FULL");
    assert_eq!(q.pragma("foreign_keys").unwrap(), "1");
    assert_eq!(q.pragma("busy_timeout").unwrap(), "10000");
    assert_eq!(
        q.pragma("user_version").unwrap(),
        schema::latest_version().to_string()
    );
    assert_eq!(
        q.pragma("application_id").unwrap(),
        APPLICATION_ID.to_string()
    );
    assert!(q.pragma("journal_mode; DROP TABLE sheets").is_err());
    // WAL is recorded in the file itself: another connection sees it.
    let other = rusqlite::Connection::open(db(&dir)).unwrap();
    let mode: String = other
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn another_connection_has_the_same_settings_and_sees_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let other = q.another_connection().unwrap();
    for (name, value) in [
        ("journal_mode", "wal"),
        ("synchronous", "2"),
        ("foreign_keys", "1"),
    ] {
        assert_eq!(other.pragma(name).unwrap(), value, "{name}");
    }
    assert_eq!(other.pragma("busy_timeout").unwrap(), "10000");
    let row = add(&mut q, "10000000001", "017510001");
    assert_eq!(other.get_sheet(row.id).unwrap().unwrap().number, row.number);
    let memory = Queue {
        conn: Connection::open_in_memory().unwrap(),
    };
    assert!(memory.another_connection().is_err());
}

#[test]
fn full_lifecycle_accepted_to_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let a = add(&mut q, "8A", "017510001");
    let b = add(&mut q, "8A", "017510001");
    assert_eq!((a.number, b.number), (1, 2));
    assert_eq!(a.state, SheetState::Accepted);
    assert_eq!(a.lot_id, None);
    assert!(q.lots_to_sign(None).unwrap().is_empty());

    let lots = q.close_lots(None, 10, "20261122110000Z").unwrap();
    assert_eq!(lots.len(), 1);
    let l = &lots[0];
    assert_eq!(
        (
            l.id.as_str(),
            l.number,
            l.destination.as_str(),
            l.state,
            l.sheet_count,
            l.closed_at.as_str()
        ),
        (
            "8A-00000001",
            1,
            "017510001",
            LotState::Closed,
            2,
            "20261122110000Z"
        )
    );
    assert_eq!(l.signed_der, None);
    for s in [&a, &b] {
        let s = sheet(&q, s.id);
        assert_eq!(
            (s.state, s.lot_id.as_deref()),
            (SheetState::InLot, Some("8A-00000001"))
        );
    }
    assert_eq!(q.lots_to_sign(None).unwrap(), lots);
    assert_eq!(q.lots_to_sign(Some("8A")).unwrap(), lots);
    assert!(q.lots_to_sign(Some("8B")).unwrap().is_empty());
    assert!(q.lots_to_send().unwrap().is_empty());
    let ids: Vec<i64> = q
        .lot_sheets("8A-00000001")
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, [a.id, b.id]);

    q.mark_lot_signed("8A-00000001", b"signed").unwrap();
    assert!(q.lots_to_sign(None).unwrap().is_empty());
    let to_send = q.lots_to_send().unwrap();
    assert_eq!(to_send.len(), 1);
    assert_eq!(
        (to_send[0].state, to_send[0].signed_der.as_deref()),
        (LotState::Signed, Some(&b"signed"[..]))
    );
    assert_eq!(sheet(&q, a.id).state, SheetState::Signed);

    assert!(q.mark_lot_sent("8A-00000001").unwrap());
    assert!(q.lots_to_send().unwrap().is_empty());
    assert_eq!(lot(&q, "8A-00000001").state, LotState::Sent);
    assert_eq!(sheet(&q, b.id).state, SheetState::Sent);
    assert!(
        !q.mark_lot_sent("8A-00000001").unwrap(),
        "already sent: no change"
    );

    let positive = arl("8A-00000001", ArlStatus::Positive, vec![]);
    assert_eq!(
        q.record_arl(&positive, b"arl der").unwrap(),
        ArlOutcome::Applied
    );
    assert_eq!(lot(&q, "8A-00000001").state, LotState::Acknowledged);
    for s in [&a, &b] {
        let s = sheet(&q, s.id);
        assert_eq!((s.state, s.reason), (SheetState::Acknowledged, None));
    }
    let ack = q.get_ack("8A-00000001").unwrap().unwrap();
    assert_eq!(
        (ack.status, ack.der.as_slice(), ack.received_at.as_str()),
        (ArlStatus::Positive, &b"arl der"[..], "20261122120000Z")
    );
    assert!(
        !q.mark_lot_sent("8A-00000001").unwrap(),
        "acknowledged: no change"
    );

    let stats = q.stats().unwrap();
    assert_eq!(stats.sheets["acknowledged"], 2);
    assert_eq!(stats.sheets["accepted"], 0);
    assert_eq!(stats.lots["acknowledged"], 1);
    assert_eq!(stats.lots.len(), LotState::ALL.len());
    assert_eq!(
        kinds(&q),
        [
            "sheet.number",
            "sheet.accepted",
            "sheet.number",
            "sheet.accepted",
            "lot.closed",
            "lot.signed",
            "lot.sent",
            "arl.positive"
        ]
    );
    let events = q.events_since(0, 100).unwrap();
    // The sheet's event: its detail, member for member, as a JSON object sorts them.
    assert_eq!(
        events[1].detail,
        r#"{"destination":"017510001","idempotency_key":null,"number":1,"practitioner_id":"8A"}"#
    );
    let arl_event = events.last().unwrap();
    assert_eq!(arl_event.subject, "8A-00000001");
    let detail: serde_json::Value = serde_json::from_str(&arl_event.detail).unwrap();
    assert_eq!(
        (detail["acknowledged"].as_u64(), detail["rejected"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(q.events_since(events[5].id, 100).unwrap().len(), 2);
    assert_eq!(q.events_since(0, 3).unwrap().len(), 3);
}

#[test]
fn negative_arl_rejects_the_named_sheets_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 3);
    assert!(q.mark_lot_sent(&lot_id).unwrap());
    let rej = vec![
        Rejection {
            sheet_number: Some(s[1].number),
            code: "SHARES".into(),
            reason: "AMO share".into(),
        },
        Rejection {
            sheet_number: Some(s[1].number),
            code: "NIR".into(),
            reason: "bad key".into(),
        },
        Rejection {
            sheet_number: Some(s[2].number),
            code: "ACT".into(),
            reason: "unknown act".into(),
        },
    ];
    assert_eq!(
        q.record_arl(&arl(&lot_id, ArlStatus::Negative, rej.clone()), b"arl")
            .unwrap(),
        ArlOutcome::Applied
    );
    assert_eq!(lot(&q, &lot_id).state, LotState::Rejected);
    let got: Vec<(SheetState, Option<String>)> = s
        .iter()
        .map(|x| sheet(&q, x.id))
        .map(|x| (x.state, x.reason))
        .collect();
    assert_eq!(
        got,
        [
            (SheetState::Acknowledged, None),
            (
                SheetState::Rejected,
                Some("SHARES: AMO share; NIR: bad key".into())
            ),
            (SheetState::Rejected, Some("ACT: unknown act".into())),
        ]
    );
    let ack = q.get_ack(&lot_id).unwrap().unwrap();
    assert_eq!((ack.status, ack.rejections), (ArlStatus::Negative, rej));
    assert_eq!(kinds(&q).last().map(String::as_str), Some("arl.negative"));
}

#[test]
fn negative_arl_for_the_whole_lot_rejects_every_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 3);
    assert!(q.mark_lot_sent(&lot_id).unwrap());
    let rej = vec![
        rejection(Some(s[0].number), "SHARES"),
        rejection(None, "LOT_SIGNATURE"),
    ];
    q.record_arl(&arl(&lot_id, ArlStatus::Negative, rej), b"arl")
        .unwrap();
    assert_eq!(lot(&q, &lot_id).state, LotState::Rejected);
    let got: Vec<(SheetState, Option<String>)> = s
        .iter()
        .map(|x| sheet(&q, x.id))
        .map(|x| (x.state, x.reason))
        .collect();
    assert_eq!(
        got,
        [
            (
                SheetState::Rejected,
                Some("SHARES: SHARES wrong; LOT_SIGNATURE: LOT_SIGNATURE wrong".into())
            ),
            (
                SheetState::Rejected,
                Some("LOT_SIGNATURE: LOT_SIGNATURE wrong".into())
            ),
            (
                SheetState::Rejected,
                Some("LOT_SIGNATURE: LOT_SIGNATURE wrong".into())
            ),
        ]
    );
    assert_eq!(q.stats().unwrap().sheets["rejected"], 3);
}

#[test]
fn negative_arl_without_reason_or_naming_a_foreign_sheet_rejects_every_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (first, _) = signed_lot(&mut q, 2);
    let (second, _) = signed_lot(&mut q, 2);
    q.record_arl(&arl(&first, ArlStatus::Negative, vec![]), b"arl")
        .unwrap();
    let reasons: Vec<Option<String>> = q
        .lot_sheets(&first)
        .unwrap()
        .into_iter()
        .map(|s| s.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            Some("NEGATIVE: negative ARL without a reason".into()),
            Some("NEGATIVE: negative ARL without a reason".into())
        ]
    );

    q.record_arl(
        &arl(
            &second,
            ArlStatus::Negative,
            vec![rejection(Some(999), "ACT")],
        ),
        b"arl",
    )
    .unwrap();
    for s in q.lot_sheets(&second).unwrap() {
        assert_eq!(s.state, SheetState::Rejected);
        assert_eq!(
            s.reason.as_deref(),
            Some("ACT: ACT wrong (for sheet 999, which is not in this lot)")
        );
    }
}

#[test]
fn duplicate_arl_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 2);
    q.mark_lot_sent(&lot_id).unwrap();
    let first = arl(
        &lot_id,
        ArlStatus::Negative,
        vec![rejection(Some(s[0].number), "SHARES")],
    );
    assert_eq!(q.record_arl(&first, b"first").unwrap(), ArlOutcome::Applied);
    let before = snapshot(&q);

    // The same ARL again, and a contradicting one: both are duplicates.
    assert_eq!(
        q.record_arl(&first, b"first").unwrap(),
        ArlOutcome::Duplicate
    );
    let other = arl(&lot_id, ArlStatus::Positive, vec![]);
    assert_eq!(
        q.record_arl(&other, b"second").unwrap(),
        ArlOutcome::Duplicate
    );
    assert_eq!(snapshot(&q), before);
    assert_eq!(sheet(&q, s[0].id).state, SheetState::Rejected);
    assert_eq!(sheet(&q, s[1].id).state, SheetState::Acknowledged);
    assert_eq!(q.get_ack(&lot_id).unwrap().unwrap().der, b"first");

    // Still a duplicate after a reopen.
    drop(q);
    let mut q = open(&dir);
    assert_eq!(
        q.record_arl(&other, b"second").unwrap(),
        ArlOutcome::Duplicate
    );
    assert_eq!(snapshot(&q), before);
}

#[test]
fn arl_for_a_lot_still_signed_is_applied_and_sent_comes_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 2);
    assert_eq!(
        q.record_arl(&arl(&lot_id, ArlStatus::Positive, vec![]), b"arl")
            .unwrap(),
        ArlOutcome::Applied
    );
    assert_eq!(lot(&q, &lot_id).state, LotState::Acknowledged);
    assert!(s
        .iter()
        .all(|x| sheet(&q, x.id).state == SheetState::Acknowledged));
    assert!(
        q.lots_to_send().unwrap().is_empty(),
        "an acknowledged lot is not sent again"
    );
    assert!(!q.mark_lot_sent(&lot_id).unwrap());
    assert_eq!(lot(&q, &lot_id).state, LotState::Acknowledged);
}

#[test]
fn arl_for_an_unknown_or_unsigned_lot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    add(&mut q, "8A", "D");
    let lots = q.close_lots(None, 10, "t").unwrap();
    let events = q.events_since(0, 100).unwrap().len();
    assert!(matches!(
        q.record_arl(&arl("nope", ArlStatus::Positive, vec![]), b""),
        Err(QueueError::NotFound(_))
    ));
    let err = q
        .record_arl(&arl(&lots[0].id, ArlStatus::Positive, vec![]), b"")
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::InvalidTransition { from, to, .. } if from == "closed" && to == "acknowledged"),
        "{err}"
    );
    assert_eq!(lot(&q, &lots[0].id).state, LotState::Closed);
    assert_eq!(q.events_since(0, 100).unwrap().len(), events);
    assert!(q.get_ack(&lots[0].id).unwrap().is_none());
}

#[test]
fn idempotent_insert_returns_the_existing_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let n = q.allocate_sheet_number("8A").unwrap();
    let first = match q
        .insert_sheet(&new_sheet("8A", n, "D", Some("key-1")))
        .unwrap()
    {
        Inserted::New(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        q.find_by_idempotency_key(Some("8A"), "key-1", None)
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        q.find_by_idempotency_key(Some("8A"), "key-2", None)
            .unwrap(),
        None
    );
    assert_eq!(
        q.find_by_idempotency_key(Some("8B"), "key-1", None)
            .unwrap(),
        None,
        "another practitioner's key"
    );
    let events = q.events_since(0, 100).unwrap().len();

    // A retry of the same call, even with a new number: nothing inserted.
    let n2 = q.allocate_sheet_number("8A").unwrap();
    let again = q
        .insert_sheet(&new_sheet("8A", n2, "D", Some("key-1")))
        .unwrap();
    assert_eq!(again, Inserted::Existing(first.clone()));
    assert_eq!(
        q.list_sheets(None, 100, 0).unwrap(),
        std::slice::from_ref(&first)
    );
    assert_eq!(
        q.events_since(0, 100).unwrap().len(),
        events + 1,
        "only the number allocation"
    );

    // Also once the sheet has moved on.
    q.close_lots(None, 10, "t").unwrap();
    let moved = q
        .insert_sheet(&new_sheet("8A", n2, "D", Some("key-1")))
        .unwrap();
    assert_eq!(moved.row().state, SheetState::InLot);
    assert_eq!(moved.row().id, first.id);
}

#[test]
fn a_used_number_is_a_conflict_and_inserted_numbers_are_never_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let s = add(&mut q, "8A", "D");
    let err = q
        .insert_sheet(&new_sheet("8A", s.number, "D", None))
        .unwrap_err();
    assert!(matches!(err, QueueError::Conflict(_)), "{err}");
    // Another practitioner may use the same number.
    assert!(matches!(
        q.insert_sheet(&new_sheet("8B", s.number, "D", None))
            .unwrap(),
        Inserted::New(_)
    ));
    // A number inserted without allocation moves the counter past it.
    q.insert_sheet(&new_sheet("8A", 10, "D", None)).unwrap();
    assert_eq!(q.allocate_sheet_number("8A").unwrap(), 11);
    assert_eq!(q.allocate_sheet_number("8B").unwrap(), s.number + 1);
    assert!(matches!(
        q.insert_sheet(&new_sheet("8A", u64::MAX, "D", None)),
        Err(QueueError::Data(_))
    ));
}

#[test]
fn numbers_are_never_reused_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    assert_eq!(
        q.allocate_sheet_number("8A").unwrap(),
        1,
        "allocated, never inserted"
    );
    let s = add(&mut q, "8A", "D");
    assert_eq!(s.number, 2);
    assert_eq!(
        q.allocate_sheet_number("8B").unwrap(),
        1,
        "per practitioner"
    );
    assert_eq!(q.close_lots(None, 10, "t").unwrap()[0].number, 1);
    drop(q);

    let mut q = open(&dir);
    assert_eq!(q.allocate_sheet_number("8A").unwrap(), 3);
    assert_eq!(q.allocate_sheet_number("8B").unwrap(), 2);
    add(&mut q, "8A", "D");
    let lots = q.close_lots(None, 10, "t").unwrap();
    assert_eq!((lots[0].number, lots[0].id.as_str()), (2, "8A-00000002"));
    drop(q);

    let mut q = open(&dir);
    assert_eq!(q.allocate_sheet_number("8A").unwrap(), 5);
    let allocations = q
        .events_since(0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "sheet.number")
        .count();
    assert_eq!(
        allocations, 7,
        "every allocation, used or not, is in the log"
    );
}

#[test]
fn close_lots_splits_by_practitioner_destination_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let d1: Vec<SheetRow> = (0..5).map(|_| add(&mut q, "8A", "D1")).collect();
    let d2 = add(&mut q, "8A", "D2");
    let other = add(&mut q, "8B", "D1");

    // One practitioner only.
    let lots = q.close_lots(Some("8B"), 2, "t1").unwrap();
    assert_eq!(
        lots.iter()
            .map(|l| (l.id.as_str(), l.sheet_count))
            .collect::<Vec<_>>(),
        [("8B-00000001", 1)]
    );
    assert_eq!(sheet(&q, other.id).lot_id.as_deref(), Some("8B-00000001"));
    assert_eq!(sheet(&q, d2.id).state, SheetState::Accepted);

    let lots = q.close_lots(None, 2, "t2").unwrap();
    let shape: Vec<(&str, &str, u64)> = lots
        .iter()
        .map(|l| (l.id.as_str(), l.destination.as_str(), l.sheet_count))
        .collect();
    assert_eq!(
        shape,
        [
            ("8A-00000001", "D1", 2),
            ("8A-00000002", "D1", 2),
            ("8A-00000003", "D1", 1),
            ("8A-00000004", "D2", 1)
        ]
    );
    assert!(lots
        .iter()
        .all(|l| l.closed_at == "t2" && l.state == LotState::Closed));
    // Sheets go in insertion order, each in exactly one lot.
    let members =
        |id: &str| -> Vec<i64> { q.lot_sheets(id).unwrap().iter().map(|s| s.id).collect() };
    assert_eq!(members("8A-00000001"), [d1[0].id, d1[1].id]);
    assert_eq!(members("8A-00000002"), [d1[2].id, d1[3].id]);
    assert_eq!(members("8A-00000003"), [d1[4].id]);
    assert_eq!(members("8A-00000004"), [d2.id]);
    assert_eq!(q.stats().unwrap().sheets["in_lot"], 7);

    // Nothing left to close; oldest first for signing, newest first in the list.
    assert!(q.close_lots(None, 2, "t3").unwrap().is_empty());
    let to_sign: Vec<String> = q
        .lots_to_sign(None)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(
        to_sign,
        [
            "8B-00000001",
            "8A-00000001",
            "8A-00000002",
            "8A-00000003",
            "8A-00000004"
        ]
    );
    let listed: Vec<String> = q.list_lots(2).unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(listed, ["8A-00000004", "8A-00000003"]);

    // max_sheets 0 is taken as 1.
    add(&mut q, "8A", "D1");
    add(&mut q, "8A", "D1");
    assert_eq!(q.close_lots(None, 0, "t4").unwrap().len(), 2);
}

#[test]
fn a_lot_is_never_signed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, _) = signed_lot(&mut q, 1);
    let before = snapshot(&q);
    let err = q.mark_lot_signed(&lot_id, b"again").unwrap_err();
    assert!(
        matches!(&err, QueueError::InvalidTransition { from, to, .. } if from == "signed" && to == "signed"),
        "{err}"
    );
    assert!(
        err.to_string().contains("cannot go from signed to signed"),
        "{err}"
    );
    assert_eq!(snapshot(&q), before, "nothing written, not even an event");
    assert_eq!(
        lot(&q, &lot_id).signed_der.as_deref(),
        Some(&b"signed lot"[..])
    );

    q.mark_lot_sent(&lot_id).unwrap();
    assert!(matches!(
        q.mark_lot_signed(&lot_id, b"again"),
        Err(QueueError::InvalidTransition { .. })
    ));
    assert!(matches!(
        q.mark_lot_signed("nope", b"x"),
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        q.mark_lot_sent("nope"),
        Err(QueueError::NotFound(_))
    ));

    // A closed lot cannot be sent before it is signed.
    add(&mut q, "8A", "D");
    let closed = q.close_lots(None, 10, "t").unwrap();
    assert!(matches!(
        q.mark_lot_sent(&closed[0].id),
        Err(QueueError::InvalidTransition { .. })
    ));
    assert!(matches!(
        q.mark_lot_signed(&closed[0].id, b""),
        Err(QueueError::Data(_))
    ));
    assert_eq!(lot(&q, &closed[0].id).state, LotState::Closed);
}

#[test]
fn list_sheets_pages_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let all: Vec<SheetRow> = (0..5).map(|_| add(&mut q, "8A", "D")).collect();
    q.close_lots(None, 2, "t").unwrap(); // lots of 2, 2, 1: all in_lot
    add(&mut q, "8A", "D");
    let page = q.list_sheets(None, 2, 0).unwrap();
    assert_eq!(
        page.iter().map(|s| s.id).collect::<Vec<_>>(),
        [all[0].id, all[1].id]
    );
    let next = q.list_sheets(None, 2, page[1].id).unwrap();
    assert_eq!(
        next.iter().map(|s| s.id).collect::<Vec<_>>(),
        [all[2].id, all[3].id]
    );
    assert_eq!(
        q.list_sheets(Some(SheetState::InLot), 100, 0)
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        q.list_sheets(Some(SheetState::Accepted), 100, 0)
            .unwrap()
            .len(),
        1
    );
    assert!(q
        .list_sheets(Some(SheetState::Sent), 100, 0)
        .unwrap()
        .is_empty());
    assert_eq!(q.list_sheets(None, usize::MAX, 0).unwrap().len(), 6);
}

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (acked, _) = signed_lot(&mut q, 2);
    q.mark_lot_sent(&acked).unwrap();
    let (rejected, s) = signed_lot(&mut q, 2);
    q.mark_lot_sent(&rejected).unwrap();
    let (signed, _) = signed_lot(&mut q, 1);
    add(&mut q, "8A", "D");
    q.close_lots(None, 10, "t").unwrap();
    add(&mut q, "8A", "D");
    let keyed = q.insert_sheet(&new_sheet("8C", 1, "D", Some("k"))).unwrap();
    q.record_arl(&arl(&acked, ArlStatus::Positive, vec![]), b"ok")
        .unwrap();
    q.record_arl(
        &arl(
            &rejected,
            ArlStatus::Negative,
            vec![rejection(Some(s[1].number), "ACT")],
        ),
        b"ko",
    )
    .unwrap();
    let before = snapshot(&q);
    assert_eq!(lot(&q, &signed).state, LotState::Signed);
    drop(q);

    // The WAL holds the commits until a checkpoint; reopening must find them all.
    let q = open(&dir);
    assert_eq!(snapshot(&q), before);
    assert_eq!(
        q.find_by_idempotency_key(Some("8C"), "k", None)
            .unwrap()
            .as_ref(),
        Some(keyed.row())
    );
    assert_eq!(
        q.lots_to_send()
            .unwrap()
            .iter()
            .map(|l| l.id.clone())
            .collect::<Vec<_>>(),
        [signed]
    );
    assert_eq!(q.lots_to_sign(None).unwrap().len(), 1);
    let stats = q.stats().unwrap();
    assert_eq!(
        (
            stats.sheets["acknowledged"],
            stats.sheets["rejected"],
            stats.sheets["signed"],
            stats.sheets["in_lot"],
            stats.sheets["accepted"]
        ),
        (3, 1, 1, 1, 2)
    );
}

#[test]
fn a_file_copied_while_open_holds_every_commit() {
    // After a call returns, its commit is in the database files (the WAL),
    // not only in the connection, although the connection is still open: a
    // copy of the database and its WAL, opened elsewhere, shows it.
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let s = add(&mut q, "8A", "D");
    let copy = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal"] {
        let from = format!("{}{suffix}", db(&dir).display());
        if Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", db(&copy).display())).unwrap();
        }
    }
    let q2 = Queue::open(&db(&copy)).unwrap();
    assert_eq!(q2.get_sheet(s.id).unwrap(), Some(s));
    drop(q);
}

fn assert_refused_untouched(path: &Path, bytes: &[u8], want: fn(&QueueError) -> bool) {
    let dir = path.parent().unwrap();
    let listing = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let files = listing(dir);
    for _ in 0..2 {
        let err = Queue::open(path).err().unwrap();
        assert!(want(&err), "{err}");
        assert!(err.to_string().contains("not modified"), "{err}");
        assert_eq!(std::fs::read(path).unwrap(), bytes, "the file was changed");
        assert_eq!(listing(dir), files, "files were added next to it");
    }
}

#[test]
fn a_corrupt_file_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    assert_refused_untouched(&path, &garbage, |e| matches!(e, QueueError::Corrupt { .. }));
    let err = Queue::open(&path).err().unwrap();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // A SQLite header followed by garbage.
    let mut damaged = b"SQLite format 3\0".to_vec();
    damaged.extend(std::iter::repeat_n(0xA5u8, 4096 - damaged.len()));
    std::fs::write(&path, &damaged).unwrap();
    assert_refused_untouched(&path, &damaged, |e| matches!(e, QueueError::Corrupt { .. }));
}

#[test]
fn a_damaged_fsed_database_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let mut q = open(&dir);
    for _ in 0..50 {
        add(&mut q, "8A", "D");
    }
    drop(q); // checkpoints the WAL into the file and removes it
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 4 * 4096);
    // Overwrite the second page onward with garbage; keep the header.
    for b in &mut bytes[4096..4 * 4096] {
        *b = 0x5A;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert_refused_untouched(&path, &bytes, |e| matches!(e, QueueError::Corrupt { .. }));
}

#[test]
fn another_programs_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('x');")
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_refused_untouched(
        &path,
        &bytes,
        |e| matches!(e, QueueError::Corrupt { detail, .. } if detail.contains("not an fsed database")),
    );
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    drop(open(&dir));
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_refused_untouched(&path, &bytes, |e| {
        matches!(e, QueueError::SchemaTooNew { found: 99, .. })
    });
}

#[test]
fn a_missing_directory_is_an_open_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Queue::open(&dir.path().join("missing").join("q.db"))
        .err()
        .unwrap();
    assert!(matches!(err, QueueError::Open { .. }), "{err}");
}

#[test]
fn a_version_1_database_is_migrated_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        // As the first fsed wrote it: migration 1 only, no application id.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(schema::MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        c.execute_batch(
            "INSERT INTO counters VALUES ('8A', 3, 3);
             INSERT INTO lots VALUES ('8A-00000002', '8A', 2, 'D', 'closed', 1, NULL, 't', 'u');
             INSERT INTO lots VALUES ('8A-00000001', '8A', 1, 'D', 'closed', 1, NULL, 't', 'u');
             INSERT INTO sheets VALUES (1, '8A', 1, 'D', NULL, 'in_lot', '8A-00000002', x'30', '{}', NULL, 'c', 'u');
             INSERT INTO sheets VALUES (2, '8A', 2, 'D', NULL, 'in_lot', '8A-00000001', x'30', '{}', NULL, 'c', 'u');",
        )
        .unwrap();
    }
    let mut q = Queue::open(&path).unwrap();
    assert_eq!(
        q.pragma("user_version").unwrap(),
        schema::latest_version().to_string()
    );
    assert_eq!(
        q.pragma("application_id").unwrap(),
        APPLICATION_ID.to_string()
    );
    // Insertion order is kept as the lot order.
    let ids: Vec<String> = q
        .lots_to_sign(None)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, ["8A-00000002", "8A-00000001"]);
    assert_eq!(q.allocate_sheet_number("8A").unwrap(), 3);
    add(&mut q, "8A", "D");
    assert_eq!(q.close_lots(None, 10, "t").unwrap()[0].id, "8A-00000003");
    assert_eq!(
        q.lots_to_sign(None).unwrap().last().unwrap().id,
        "8A-00000003"
    );
    drop(q);
    // And it opens again as an fsed database.
    Queue::open(&path).unwrap();
}

#[test]
fn states_round_trip_through_their_names() {
    for s in SheetState::ALL {
        assert_eq!(s.as_str().parse::<SheetState>(), Ok(*s));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::Value::String(s.as_str().into())
        );
    }
    for s in LotState::ALL {
        assert_eq!(s.as_str().parse::<LotState>(), Ok(*s));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::Value::String(s.as_str().into())
        );
    }
    assert_eq!(
        "inlot".parse::<SheetState>(),
        Err(UnknownState("inlot".into()))
    );
    assert_eq!(SheetState::InLot.as_str(), "in_lot");
}

#[test]
fn participation_history_is_kept_per_beneficiary_and_date_with_the_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    let pid = "810000000009";
    let insert = |q: &mut Queue, who: &str, entries: Vec<(&str, u64)>, dre: Option<Vec<u8>>| {
        let number = q.allocate_sheet_number(pid).unwrap();
        let mut s = new_sheet(pid, number, "017510001", None);
        s.beneficiary_key = who.into();
        s.participation = entries.into_iter().map(|(d, c)| w(d, 1, c)).collect();
        s.dre = dre;
        match q.insert_sheet(&s).unwrap() {
            Inserted::New(r) => r,
            Inserted::Existing(r) => panic!("unexpected {r:?}"),
        }
    };
    let a = insert(
        &mut q,
        "A",
        vec![("20261116", 200), ("20261117", 200)],
        None,
    );
    insert(
        &mut q,
        "A",
        vec![("20261116", 200), ("20261116", 0)],
        Some(vec![0x30, 0]),
    );
    insert(&mut q, "B", vec![("20261116", 200)], None);
    insert(&mut q, "A", vec![("20251231", 200)], None);
    let h = q
        .participation_history("A", "20260101", "20261231")
        .unwrap();
    // Two sheets of the 16th (200 + 200, the entry of 0 not stored), one of the 17th.
    assert_eq!(
        h,
        vec![
            rec("20261116", Some(pid), Some(2), 400),
            rec("20261117", Some(pid), Some(1), 200)
        ]
    );
    assert_eq!(
        q.participation_history("B", "20260101", "20261231")
            .unwrap()
            .len(),
        1
    );
    assert!(q
        .participation_history("C", "20000101", "29991231")
        .unwrap()
        .is_empty());
    assert_eq!(q.sheet_dre(a.id).unwrap(), None);
    assert_eq!(q.sheet_dre(a.id + 1).unwrap(), Some(vec![0x30, 0]));
    // Kept across a reopen: the caps hold after a restart.
    drop(q);
    let q = Queue::open(&dir.path().join("q.db")).unwrap();
    assert_eq!(
        q.participation_history("A", "20261116", "20261116")
            .unwrap(),
        vec![rec("20261116", Some(pid), Some(2), 400)]
    );
}

#[test]
fn a_group_commit_stores_each_sheet_or_refuses_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    let first = q.reserve_sheet_numbers("8A", 10).unwrap();
    assert_eq!(first, 1);
    // The next reservation starts after the whole block, even unused.
    assert_eq!(q.reserve_sheet_numbers("8A", 1).unwrap(), 11);
    assert!(q.reserve_sheet_numbers("8A", 0).is_err());
    let batch = vec![
        new_sheet("8A", 1, "017510001", Some("k1")),
        new_sheet("8A", 2, "017510001", None),
        new_sheet("8A", 2, "017510001", None), // number already used in this batch
        new_sheet("8A", 3, "017510001", Some("k1")), // same key: the first sheet comes back
        new_sheet("8A", 4, "017510001", None),
    ];
    let out = q.insert_sheets(&batch).unwrap();
    assert!(matches!(&out[0], Ok(Inserted::New(r)) if r.number == 1));
    assert!(matches!(&out[1], Ok(Inserted::New(r)) if r.number == 2));
    assert!(
        matches!(&out[2], Err(QueueError::Conflict(_))),
        "{:?}",
        out[2]
    );
    assert!(matches!(&out[3], Ok(Inserted::Existing(r)) if r.number == 1));
    assert!(matches!(&out[4], Ok(Inserted::New(r)) if r.number == 4));
    drop(q);
    let q = Queue::open(&dir.path().join("q.db")).unwrap();
    let stored = q.list_sheets(None, 100, 0).unwrap();
    let numbers: Vec<u64> = stored.iter().map(|s| s.number).collect();
    assert_eq!(numbers, vec![1, 2, 4]);
}

#[test]
fn deadline_alarms_list_unsent_sheets_due_by_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    for (n, deadline) in [(1, "20261119"), (2, "20261126"), (3, "20261118")] {
        let mut s = new_sheet("8A", n, "017510001", None);
        s.deadline = Some(deadline.into());
        q.insert_sheet(&s).unwrap();
    }
    let mut none = new_sheet("8A", 4, "017510001", None);
    none.deadline = None;
    q.insert_sheet(&none).unwrap();
    let alarms = q.deadline_alarms("20261119").unwrap();
    let numbers: Vec<u64> = alarms.iter().map(|a| a.number).collect();
    assert_eq!(
        numbers,
        vec![3, 1],
        "earliest deadline first, later ones left out"
    );
    assert!(alarms
        .iter()
        .all(|a| a.state == "accepted" && a.lot_id.is_none()));
    // Once sent, a sheet raises no alarm.
    let lots = q.close_lots(None, 10, "20261117120000Z").unwrap();
    q.mark_lot_signed(&lots[0].id, &[0x30, 0x00]).unwrap();
    assert_eq!(q.deadline_alarms("20261119").unwrap().len(), 2);
    q.mark_lot_sent(&lots[0].id).unwrap();
    assert!(q.deadline_alarms("20261231").unwrap().is_empty());
}

#[test]
fn retention_purges_acknowledged_lots_and_keeps_their_participation() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    for n in 1..=3 {
        let mut s = new_sheet("8A", n, "017510001", None);
        s.beneficiary_key = "B".into();
        s.participation = vec![w("20261116", 1, 200)];
        q.insert_sheet(&s).unwrap();
    }
    let lots = q.close_lots(None, 2, "20261117120000Z").unwrap();
    assert_eq!(lots.len(), 2);
    for l in &lots {
        q.mark_lot_signed(&l.id, b"signed").unwrap();
        q.mark_lot_sent(&l.id).unwrap();
    }
    q.record_arl(&arl(&lots[0].id, ArlStatus::Positive, vec![]), b"arl")
        .unwrap();
    // Not acknowledged yet: refused.
    assert!(q.purge_lot(&lots[1].id).is_err());
    let due = q.lots_to_purge("9999-12-31T00:00:00Z").unwrap();
    assert_eq!(
        due.iter().map(|l| &l.id).collect::<Vec<_>>(),
        vec![&lots[0].id]
    );
    assert!(q.lots_to_purge("2000-01-01T00:00:00Z").unwrap().is_empty());
    assert_eq!(q.purge_lot(&lots[0].id).unwrap(), 2);
    assert!(q.get_lot(&lots[0].id).unwrap().is_none());
    assert!(q.get_ack(&lots[0].id).unwrap().is_none());
    assert_eq!(q.list_sheets(None, 10, 0).unwrap().len(), 1);
    // The caps still see all three participations, with their professional: 2 kept + 1.
    assert_eq!(
        q.participation_history("B", "20260101", "20261231")
            .unwrap(),
        vec![rec("20261116", Some("8A"), Some(3), 600)]
    );
    let purged = q
        .events_since(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "lot.purged")
        .count();
    assert_eq!(purged, 1);
}

#[test]
fn a_sheet_is_cancelled_only_before_it_is_in_a_lot() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    let mut s = new_sheet("8A", 1, "017510001", None);
    s.beneficiary_key = "B".into();
    s.participation = vec![w("20261116", 1, 200)];
    let Inserted::New(a) = q.insert_sheet(&s).unwrap() else {
        panic!()
    };
    let Inserted::New(b) = q
        .insert_sheet(&new_sheet("8A", 2, "017510001", None))
        .unwrap()
    else {
        panic!()
    };
    let cancelled = q.cancel_sheet(a.id, "patient left before the act").unwrap();
    assert_eq!(cancelled.state, SheetState::Cancelled);
    assert_eq!(
        cancelled.reason.as_deref(),
        Some("patient left before the act")
    );
    assert!(q
        .participation_history("B", "20260101", "20261231")
        .unwrap()
        .is_empty());
    assert!(matches!(
        q.cancel_sheet(a.id, "again"),
        Err(QueueError::InvalidTransition { .. })
    ));
    assert!(matches!(
        q.cancel_sheet(999, "x"),
        Err(QueueError::NotFound(_))
    ));
    // The cancelled sheet stays out of lots.
    let lots = q.close_lots(None, 10, "20261117120000Z").unwrap();
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0].sheet_count, 1);
    assert!(matches!(
        q.cancel_sheet(b.id, "too late"),
        Err(QueueError::InvalidTransition { .. })
    ));
}

#[test]
fn a_version_6_database_keeps_its_sheets_and_participation_through_the_state_rebuild() {
    let sample = fse_formats::fse::CareSheet::sample(1);
    let json = serde_json::to_string(&sample).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "foreign_keys", true).unwrap();
        for sql in &schema::MIGRATIONS[..6] {
            let tx = c.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.commit().unwrap();
        }
        c.pragma_update(None, "user_version", 6).unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        c.execute(
            "INSERT INTO sheets (id, practitioner_id, number, destination, idempotency_key, state, der, json, created_at, updated_at, deadline)
                 VALUES (7, '8A', 1, 'D', 'k', 'accepted', ?1, ?2, 'c', 'u', '20261119')",
            rusqlite::params![sample.to_der().unwrap(), json],
        )
        .unwrap();
        c.execute_batch("INSERT INTO participation VALUES ('B', '20261116', 200, 7);")
            .unwrap();
    }
    let mut q = Queue::open(&path).unwrap();
    assert_eq!(
        q.pragma("user_version").unwrap(),
        schema::latest_version().to_string()
    );
    let s = q
        .find_by_idempotency_key(Some("8A"), "k", None)
        .unwrap()
        .unwrap();
    assert_eq!((s.id, s.number, s.state), (7, 1, SheetState::Accepted));
    // Its body moved to its own table (migration 10), its JSON is rendered from its DER
    // (migration 13): the same text.
    assert_eq!(s.der, sample.to_der().unwrap());
    assert_eq!(s.json, json);
    assert_eq!(q.deadline_alarms("20261119").unwrap().len(), 1);
    // Its professional from its sheet (migration 14), its count unknown.
    assert_eq!(
        q.participation_history("B", "20260101", "20261231")
            .unwrap(),
        vec![rec("20261116", Some("8A"), None, 200)]
    );
    assert_eq!(
        q.cancel_sheet(7, "test").unwrap().state,
        SheetState::Cancelled
    );
    assert!(q.pragma("foreign_keys").unwrap() == "1");
}

#[test]
fn a_rejected_sheet_is_resubmitted_into_a_new_lot() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    let a = add(&mut q, "8A", "D");
    let lot = q.close_lots(None, 10, "t").unwrap().remove(0);
    q.mark_lot_signed(&lot.id, b"signed").unwrap();
    q.mark_lot_sent(&lot.id).unwrap();
    assert!(matches!(
        q.resubmit_sheet(a.id),
        Err(QueueError::InvalidTransition { .. })
    ));
    let rej = vec![Rejection {
        sheet_number: Some(a.number),
        code: "SHARES".into(),
        reason: "AMO share".into(),
    }];
    q.record_arl(&arl(&lot.id, ArlStatus::Negative, rej), b"arl")
        .unwrap();
    assert_eq!(sheet(&q, a.id).state, SheetState::Rejected);
    let back = q.resubmit_sheet(a.id).unwrap();
    assert_eq!(
        (back.state, back.lot_id.clone()),
        (SheetState::Accepted, None)
    );
    let again = q.close_lots(None, 10, "t2").unwrap().remove(0);
    assert_ne!(again.id, lot.id);
    assert_eq!(sheet(&q, a.id).lot_id.as_deref(), Some(again.id.as_str()));
    assert!(matches!(
        q.resubmit_sheet(999),
        Err(QueueError::NotFound(_))
    ));
}

#[test]
fn payment_returns_pay_or_refuse_acknowledged_sheets_once() {
    use fse_formats::ack::{Payment, PaymentOutcome, PaymentReturn};
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (lot_id, s) = signed_lot(&mut q, 4);
    q.mark_lot_sent(&lot_id).unwrap();
    let ret = PaymentReturn {
        lot_id: lot_id.clone(),
        insurer: "011751234".into(),
        issued_at: "20261130120000Z".into(),
        payments: vec![
            Payment {
                sheet_number: s[0].number,
                outcome: PaymentOutcome::Paid { amount_cents: 1900 },
            },
            Payment {
                sheet_number: s[1].number,
                outcome: PaymentOutcome::Refused {
                    code: "RIGHTS_CLOSED".into(),
                    reason: "droits fermés à la date des soins".into(),
                },
            },
            Payment {
                sheet_number: s[2].number,
                outcome: PaymentOutcome::Paid { amount_cents: 700 },
            },
            Payment {
                sheet_number: 999_999,
                outcome: PaymentOutcome::Paid { amount_cents: 1 },
            },
            Payment {
                sheet_number: u64::MAX,
                outcome: PaymentOutcome::Paid { amount_cents: 1 },
            },
            Payment {
                sheet_number: s[3].number,
                outcome: PaymentOutcome::Paid {
                    amount_cents: u64::MAX,
                },
            },
        ],
    };
    // Before the ARL: nothing is applied, the return is to be offered again.
    let early = q.record_payments(&ret).unwrap();
    assert!(early.not_yet && early.applied.is_empty());
    assert_eq!(sheet(&q, s[0].id).state, SheetState::Sent);

    q.record_arl(
        &arl(
            &lot_id,
            ArlStatus::Negative,
            vec![rejection(Some(s[2].number), "SHARES")],
        ),
        b"arl",
    )
    .unwrap();
    let done = q.record_payments(&ret).unwrap();
    assert!(!done.not_yet);
    assert_eq!(done.applied.len(), 2, "{done:?}");
    assert_eq!(done.duplicates, 0);
    let ignored: Vec<u64> = done.ignored.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        ignored,
        vec![s[2].number, 999_999, u64::MAX, s[3].number],
        "a rejected sheet, strangers and an impossible amount are not paid, and nothing fails"
    );
    assert_eq!(sheet(&q, s[0].id).state, SheetState::Paid);
    let refused = sheet(&q, s[1].id);
    assert_eq!(refused.state, SheetState::Refused);
    assert_eq!(
        refused.reason.as_deref(),
        Some("RIGHTS_CLOSED: droits fermés à la date des soins")
    );
    assert_eq!(
        sheet(&q, s[3].id).state,
        SheetState::Acknowledged,
        "not in this return"
    );
    let kinds = kinds(&q);
    assert!(
        kinds.contains(&"sheet.paid".to_string()) && kinds.contains(&"sheet.refused".to_string())
    );

    // The same return again, even after a reopen: nothing changes.
    let before = snapshot(&q);
    drop(q);
    let mut q = open(&dir);
    let again = q.record_payments(&ret).unwrap();
    assert_eq!((again.applied.len(), again.duplicates), (0, 2));
    assert_eq!(snapshot(&q), before);
    let rows = q.payments(Some(&lot_id), 10).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .any(|r| r.sheet_id == s[0].id
                && r.outcome == PaymentOutcome::Paid { amount_cents: 1900 })
    );
    assert_eq!(q.payments(Some("other"), 10).unwrap().len(), 0);
    assert_eq!(q.acks(None, 10).unwrap().len(), 1);
    assert_eq!(q.stats().unwrap().sheets["paid"], 1);
}

#[test]
fn dre_lots_are_stored_with_their_lot_sent_once_and_kept_until_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let _ = add(&mut q, "8A", "D");
    let lots = q.close_lots(None, 100, "20261122110000Z").unwrap();
    let lot_id = lots[0].id.clone();
    q.mark_lot_signed_with_dres(
        &lot_id,
        b"signed lot",
        None,
        &[("88888888".into(), b"dre lot".to_vec(), 1)],
    )
    .unwrap();
    assert_eq!(
        q.dre_lots_to_send().unwrap(),
        vec![(lot_id.clone(), "88888888".to_string(), b"dre lot".to_vec())]
    );
    q.mark_lot_sent(&lot_id).unwrap();
    q.record_arl(&arl(&lot_id, ArlStatus::Positive, vec![]), b"arl")
        .unwrap();
    let refused = q.purge_lot(&lot_id).unwrap_err();
    assert!(
        refused.to_string().contains("DRE lots not sent"),
        "{refused}"
    );
    q.mark_dre_lot_sent(&lot_id, "88888888").unwrap();
    q.mark_dre_lot_sent(&lot_id, "88888888").unwrap();
    assert!(q.dre_lots_to_send().unwrap().is_empty());
    assert_eq!(
        q.lot_dre_lots(&lot_id).unwrap(),
        vec![("88888888".to_string(), 1, "sent".to_string())]
    );
    assert_eq!(
        kinds(&q).iter().filter(|k| *k == "dre_lot.sent").count(),
        1,
        "sent once"
    );
    assert_eq!(q.purge_lot(&lot_id).unwrap(), 1);
}

#[test]
fn closing_by_size_closes_only_full_lots() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    for _ in 0..3 {
        add(&mut q, "8A", "D");
    }
    add(&mut q, "8A", "E");
    let lots = q.close_full_lots(2, "20261122110000Z").unwrap();
    assert_eq!(lots.len(), 1);
    assert_eq!(
        (lots[0].destination.as_str(), lots[0].sheet_count),
        ("D", 2)
    );
    assert_eq!(
        q.accepted_summary(100).unwrap().0,
        2,
        "a partial lot per destination waits"
    );
    assert_eq!(q.close_lots(None, 2, "20261122110000Z").unwrap().len(), 2);
    assert_eq!(q.accepted_summary(100).unwrap(), (0, None));
}

#[test]
fn backlog_counts_unsent_sheets_their_oldest_and_nearest_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let empty = q.backlog().unwrap();
    assert_eq!((empty.unsent, empty.oldest_created_at), (0, None));
    assert_eq!(q.quick_check().unwrap(), Ok(()));
    let mut ids = Vec::new();
    for (n, (created, deadline)) in [
        ("20261120080000Z", "20270301"),
        ("20261121080000Z", "20270115"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = new_sheet("PS1", n as u64 + 1, "017510001", None);
        s.created_at = created.into();
        s.deadline = Some(deadline.into());
        ids.push(q.insert_sheet(&s).unwrap().row().id);
    }
    let b = q.backlog().unwrap();
    assert_eq!(b.unsent, 2);
    assert_eq!(b.oldest_created_at.as_deref(), Some("20261120080000Z"));
    assert_eq!(b.nearest_deadline.as_deref(), Some("20270115"));
    assert!(b.last_event_at.is_some());
    q.cancel_sheet(ids[1], "patient left").unwrap();
    let b = q.backlog().unwrap();
    assert_eq!(
        (b.unsent, b.nearest_deadline.as_deref()),
        (1, Some("20270301"))
    );
    // A sheet in a lot closed or signed still waits; once the lot is sent it no longer does.
    let lots = q.close_lots(None, 100, "20261122100000Z").unwrap();
    let unsent = |q: &Queue| q.backlog().unwrap().unsent;
    assert_eq!(unsent(&q), 1);
    q.mark_lot_signed(&lots[0].id, b"signed lot").unwrap();
    assert_eq!(unsent(&q), 1);
    let mut s = new_sheet("PS1", 3, "017510001", None);
    s.created_at = "20261122080000Z".into();
    q.insert_sheet(&s).unwrap();
    let b = q.backlog().unwrap();
    assert_eq!(
        (b.unsent, b.oldest_created_at.as_deref()),
        (2, Some("20261120080000Z"))
    );
    assert!(q.mark_lot_sent(&lots[0].id).unwrap());
    let b = q.backlog().unwrap();
    assert_eq!(
        (b.unsent, b.oldest_created_at.as_deref()),
        (1, Some("20261122080000Z"))
    );
}

/// The statements the batcher runs for every lot find their rows through an index, and a sheet's
/// state changes after its lot closes touch no index: the open sheets are the only ones indexed
/// by state, and a sheet without a lot has no `sheets_lot` entry. A sheet's insert builds no
/// temporary table.
#[test]
fn the_lot_statements_use_the_partial_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let plan = |q: &Queue, sql: &str| -> String {
        let mut stmt = q
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        // Unbound parameters are NULL: the plan is the same.
        let mut rows = stmt.raw_query();
        let mut steps = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            steps.push(r.get::<_, String>(3).unwrap());
        }
        steps.join("; ")
    };
    for (sql, index) in [
        (OPEN_GROUPS, "sheets_accepted"),
        (OPEN_SHEETS_OF_GROUP, "sheets_accepted"),
        (MOVE_INTO_LOT, "sheets_accepted"),
        (MOVE_SHEETS, "sheets_lot"),
        (BACKLOG, "sheets_accepted"),
        (BACKLOG, "sheets_lot"),
        // A retry's lookup, at the insert or after a refusal.
        (SHEET_BY_KEY, "sheets_idempotency"),
        (SHEETS_BY_KEY, "sheets_idempotency"),
    ] {
        let p = plan(&q, sql);
        assert!(p.contains(index), "{sql}: {p}");
        // No pass over the whole table.
        assert!(
            !p.split("; ")
                .any(|step| step == "SCAN sheets" || step == "SCAN s"),
            "{sql}: {p}"
        );
    }
    // A sheet's insert builds no temporary table (as `state IN (…)` did). (The updates of a
    // whole lot collect their rows in one first.)
    {
        let mut stmt = q.conn.prepare(&format!("EXPLAIN {INSERT_SHEET}")).unwrap();
        let mut rows = stmt.raw_query();
        while let Some(r) = rows.next().unwrap() {
            assert_ne!(r.get::<_, String>(1).unwrap(), "OpenEphemeral");
        }
    }
    let entries = |q: &Queue, index: &str| -> i64 {
        q.conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM sheets INDEXED BY {index} WHERE {}",
                    match index {
                        "sheets_accepted" => "state = 'accepted'",
                        _ => "lot_id IS NOT NULL",
                    }
                ),
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    for _ in 0..3 {
        add(&mut q, "8A", "017510001");
    }
    assert_eq!(
        (entries(&q, "sheets_accepted"), entries(&q, "sheets_lot")),
        (3, 0)
    );
    let lots = q.close_lots(None, 2, "20261122100000Z").unwrap();
    assert_eq!(
        lots.iter().map(|l| l.sheet_count).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(
        (entries(&q, "sheets_accepted"), entries(&q, "sheets_lot")),
        (0, 3)
    );
    let integrity: String = q
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn row_stamps_read_as_sqlite_writes_them() {
    use chrono::TimeZone;
    for (secs, nanos, want) in [
        (0, 0, "1970-01-01T00:00:00.000Z"),
        (1_796_031_730, 123_456_789, "2026-11-30T09:42:10.123Z"),
        (253_402_300_799, 999_999_999, "9999-12-31T23:59:59.999Z"),
    ] {
        let at = chrono::Utc.timestamp_opt(secs, nanos).unwrap();
        assert_eq!(stamp_of(at), want);
        assert_eq!(
            stamp_of(at),
            at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
        );
    }
    // The shape of SQLite's own clock, and the same time within a few seconds.
    let dir = tempfile::tempdir().unwrap();
    let q = open(&dir);
    let sqlite: String = q
        .conn
        .query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ','now')", [], |r| {
            r.get(0)
        })
        .unwrap();
    let ours = stamp();
    let parse =
        |s: &str| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3fZ").unwrap();
    assert_eq!(ours.len(), sqlite.len());
    assert!(
        (parse(&ours) - parse(&sqlite)).num_seconds().abs() < 5,
        "{ours} {sqlite}"
    );
}

/// A sheet priced on a history another sheet has since outrun is refused, whole, rather than
/// let its beneficiary's withholding pass the day's or the year's cap; within one group commit,
/// the sheets before it count too.
#[test]
fn a_sheet_over_the_participation_caps_is_refused_and_nothing_of_it_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    // Small caps to reach them soon: 2 participations a day per professional, 6 € a year.
    let caps = Some(ParticipationCaps {
        per_day_per_professional: 2,
        per_year_cents: 600,
    });
    let pid = "810000000009";
    let sheet = |q: &mut Queue, entries: &[(&str, u64)]| {
        let number = q.allocate_sheet_number(pid).unwrap();
        let mut s = new_sheet(pid, number, "017510001", None);
        s.beneficiary_key = "B".into();
        s.participation = entries.iter().map(|(d, c)| w(d, 1, *c)).collect();
        s.participation_caps = caps;
        s
    };
    let first = sheet(&mut q, &[("20261116", 200), ("20261117", 200)]);
    assert!(matches!(q.insert_sheet(&first), Ok(Inserted::New(_))));
    // One more on the 16th fits the day (2 participations) and the year (6 €).
    let second = sheet(&mut q, &[("20261116", 200)]);
    assert!(matches!(q.insert_sheet(&second), Ok(Inserted::New(_))));
    // The day is full (a third participation, even of 1 €); then the year.
    let over_day = sheet(&mut q, &[("20261116", 100)]);
    let over_year = sheet(&mut q, &[("20261201", 200)]);
    let events = q.events_since(0, 100).unwrap().len();
    match q.insert_sheet(&over_day) {
        Err(QueueError::OverCap(why)) => assert!(why.contains("20261116"), "{why}"),
        other => panic!("expected OverCap, got {other:?}"),
    }
    match q.insert_sheet(&over_year) {
        Err(QueueError::OverCap(why)) => assert!(why.contains("2026"), "{why}"),
        other => panic!("expected OverCap, got {other:?}"),
    }
    // Nothing of them was written; another beneficiary, another year, or no caps: accepted.
    assert_eq!(q.events_since(0, 100).unwrap().len(), events);
    assert_eq!(
        q.participation_history("B", "20260101", "20261231")
            .unwrap(),
        [
            rec("20261116", Some(pid), Some(2), 400),
            rec("20261117", Some(pid), Some(1), 200)
        ]
    );
    let mut other = sheet(&mut q, &[("20261116", 200)]);
    other.beneficiary_key = "C".into();
    assert!(matches!(q.insert_sheet(&other), Ok(Inserted::New(_))));
    let next_year = sheet(&mut q, &[("20270104", 200)]);
    assert!(matches!(q.insert_sheet(&next_year), Ok(Inserted::New(_))));
    let mut uncapped = sheet(&mut q, &[("20261116", 200)]);
    uncapped.participation_caps = None;
    assert!(matches!(q.insert_sheet(&uncapped), Ok(Inserted::New(_))));

    // In one group: the second of two sheets that fit alone but not together is refused, the
    // first committed.
    let mut a = sheet(&mut q, &[("20270105", 400)]);
    a.participation[0].acts = 2;
    let b = sheet(&mut q, &[("20270105", 200)]);
    let (_, out) = q.commit_group(&[], &[a, b]).unwrap();
    assert!(matches!(&out[0], Ok(Inserted::New(_))), "{:?}", out[0]);
    assert!(
        matches!(&out[1], Err(QueueError::OverCap(_))),
        "{:?}",
        out[1]
    );
}

/// A retry of a sheet already stored answers that sheet, even when the sheet itself filled its
/// beneficiary's caps: the caps are checked for new sheets only, alone or in a group commit.
#[test]
fn a_retry_of_a_sheet_that_filled_the_caps_answers_that_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let pid = "810000000009";
    let sheet = |q: &mut Queue, key: &str| {
        let number = q.allocate_sheet_number(pid).unwrap();
        let mut s = new_sheet(pid, number, "017510001", Some(key));
        s.beneficiary_key = "B".into();
        s.participation = vec![w("20261116", 4, 800)];
        s.participation_caps = Some(ParticipationCaps {
            per_day_per_professional: 4,
            per_year_cents: 5000,
        });
        s
    };
    let original = sheet(&mut q, "k1");
    let first = match q.insert_sheet(&original).unwrap() {
        Inserted::New(row) => row,
        other => panic!("expected a new sheet, got {other:?}"),
    };
    // Priced again with a number of its own, as a retry reaching the insert is.
    let retry = sheet(&mut q, "k1");
    match q.insert_sheet(&retry).unwrap() {
        Inserted::Existing(row) => assert_eq!((row.id, row.number), (first.id, first.number)),
        other => panic!("expected the first sheet, got {other:?}"),
    }
    let group = [sheet(&mut q, "k1"), sheet(&mut q, "k2")];
    let (_, out) = q.commit_group(&[], &group).unwrap();
    assert!(
        matches!(&out[0], Ok(Inserted::Existing(row)) if row.id == first.id),
        "{:?}",
        out[0]
    );
    assert!(
        matches!(&out[1], Err(QueueError::OverCap(_))),
        "{:?}",
        out[1]
    );
    assert_eq!(
        q.participation_history("B", "20260101", "20261231")
            .unwrap(),
        [rec("20261116", Some(pid), Some(4), 800)]
    );
}

/// Lots close, are signed and sent in the commit of the sheets stored with them; a write that
/// is refused (a lot sent before it is signed) is rolled back alone, nothing else with it.
#[test]
fn lot_changes_share_a_group_commit_and_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let pid = "810000000009";
    let mut sheets = Vec::new();
    for _ in 0..3 {
        let number = q.allocate_sheet_number(pid).unwrap();
        sheets.push(new_sheet(pid, number, "017510001", None));
    }
    let close = GroupWrite::CloseLots {
        practitioner_id: None,
        max_sheets: 2,
        now: "20261130120000Z".into(),
        full_only: true,
    };
    let ((_, inserted), written) = q
        .commit_group_writes(&[], &sheets, std::slice::from_ref(&close))
        .unwrap();
    assert!(inserted.iter().all(|r| matches!(r, Ok(Inserted::New(_)))));
    let lots = match &written[..] {
        [Ok(GroupWritten::Closed(lots))] => lots.clone(),
        other => panic!("{other:?}"),
    };
    // Full lots only: two of the three sheets, the third waits.
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0].sheet_count, 2);
    let lot_id = lots[0].id.clone();

    // In one group: a refused write (sent before signed), then the signature, then the sending.
    let number = q.allocate_sheet_number(pid).unwrap();
    let more = [new_sheet(pid, number, "017510001", None)];
    let writes = [
        GroupWrite::LotSent {
            lot_id: lot_id.clone(),
        },
        GroupWrite::LotSigned {
            lot_id: lot_id.clone(),
            signed_der: b"signed lot".to_vec(),
            cms: None,
            dre_lots: Vec::new(),
        },
        GroupWrite::LotSent {
            lot_id: lot_id.clone(),
        },
    ];
    let ((_, inserted), written) = q.commit_group_writes(&[], &more, &writes).unwrap();
    assert!(matches!(&inserted[0], Ok(Inserted::New(_))), "{inserted:?}");
    assert!(
        matches!(&written[0], Err(QueueError::InvalidTransition { .. })),
        "{:?}",
        written[0]
    );
    assert!(
        matches!(&written[1], Ok(GroupWritten::Signed)),
        "{:?}",
        written[1]
    );
    assert!(
        matches!(&written[2], Ok(GroupWritten::Sent(true))),
        "{:?}",
        written[2]
    );
    let lot = q.get_lot(&lot_id).unwrap().unwrap();
    assert_eq!(lot.state, LotState::Sent);
    assert_eq!(lot.signed_der.as_deref(), Some(&b"signed lot"[..]));
    let kinds: Vec<String> = q
        .events_since(0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.starts_with("lot."))
        .collect();
    assert_eq!(kinds, ["lot.closed", "lot.signed", "lot.sent"]);
    assert_eq!(q.stats().unwrap().sheets.get("sent"), Some(&2));
    assert_eq!(q.stats().unwrap().sheets.get("accepted"), Some(&2));
}

#[test]
fn a_sheet_read_back_has_the_json_of_its_der_and_a_damaged_der_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let new = new_sheet("810000000009", 1, "017510001", Some("k"));
    let Inserted::New(row) = q.insert_sheet(&new).unwrap() else {
        panic!("a new sheet expected");
    };
    let stored: String = q
        .conn
        .query_row(
            "SELECT group_concat(name) FROM pragma_table_info('sheet_bodies')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, "sheet_id,der,dre,checksum", "no JSON column");
    let back = q.get_sheet(row.id).unwrap().unwrap();
    assert_eq!((back.der, back.json), (new.der.clone(), new.json.clone()));
    let by_key = q
        .find_by_idempotency_key(Some("810000000009"), "k", None)
        .unwrap()
        .unwrap();
    assert_eq!(by_key.json, new.json);
    // A DER that no longer decodes, its checksum made to match: the decoding catches it.
    let checksum = crate::sheet_checksum(row.id, &[0x30, 0x00], None);
    q.conn
        .execute(
            "UPDATE sheet_bodies SET der = x'3000', checksum = ?2 WHERE sheet_id = ?1",
            params![row.id, checksum.as_slice()],
        )
        .unwrap();
    let e = q.get_sheet(row.id).unwrap_err().to_string();
    assert!(e.contains("stored sheet"), "{e}");
}

/// An idempotency key is the practitioner's, for one request: the same key and request answer
/// the first sheet; the same key with another request is refused, nothing written; another
/// practitioner's same key is a sheet of its own. Alone or in a group commit.
#[test]
fn an_idempotency_key_belongs_to_one_practitioner_and_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let (h1, h2, h3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let keyed = |q: &mut Queue, pid: &str, key: &str, hash: [u8; 32]| {
        let number = q.allocate_sheet_number(pid).unwrap();
        let mut s = new_sheet(pid, number, "D", Some(key));
        s.request_hash = Some(hash);
        s
    };
    let a1 = keyed(&mut q, "8A", "k", h1);
    let Inserted::New(first) = q.insert_sheet(&a1).unwrap() else {
        panic!("a new sheet expected");
    };
    // The same request again: the first sheet.
    let again = keyed(&mut q, "8A", "k", h1);
    assert_eq!(
        q.insert_sheet(&again).unwrap(),
        Inserted::Existing(first.clone())
    );
    // Another request with the same key: refused, naming the sheet made first; nothing written.
    let events = q.events_since(0, 1000).unwrap().len();
    let other = keyed(&mut q, "8A", "k", h2);
    let events = events + 1; // the number allocation
    match q.insert_sheet(&other) {
        Err(QueueError::IdempotencyKeyReused {
            key,
            practitioner_id,
            sheet_id,
        }) => assert_eq!(
            (key.as_str(), practitioner_id.as_str(), sheet_id),
            ("k", "8A", first.id)
        ),
        x => panic!("expected IdempotencyKeyReused, got {x:?}"),
    }
    assert_eq!(q.events_since(0, 1000).unwrap().len(), events);
    assert_eq!(q.list_sheets(None, 10, 0).unwrap().len(), 1);
    // Another practitioner's same key: his own sheet.
    let b = keyed(&mut q, "8B", "k", h2);
    let Inserted::New(second) = q.insert_sheet(&b).unwrap() else {
        panic!("a new sheet expected");
    };
    assert_ne!(second.id, first.id);
    // A sheet inserted without a hash is compared on nothing.
    let mut unhashed = keyed(&mut q, "8A", "k", h3);
    unhashed.request_hash = None;
    assert_eq!(
        q.insert_sheet(&unhashed).unwrap(),
        Inserted::Existing(first.clone())
    );

    // Looked up after a refusal: by practitioner, or, without one, the one sheet of the
    // same request.
    let find = |pid: Option<&str>, hash: Option<&[u8; 32]>| {
        q.find_by_idempotency_key(pid, "k", hash)
            .map(|r| r.map(|r| r.id))
    };
    assert_eq!(find(Some("8A"), Some(&h1)).unwrap(), Some(first.id));
    assert!(matches!(
        find(Some("8A"), Some(&h2)),
        Err(QueueError::IdempotencyKeyReused { sheet_id, .. }) if sheet_id == first.id
    ));
    assert_eq!(find(Some("8B"), Some(&h2)).unwrap(), Some(second.id));
    assert_eq!(find(Some("8C"), Some(&h1)).unwrap(), None);
    assert_eq!(find(None, Some(&h1)).unwrap(), Some(first.id));
    assert_eq!(find(None, Some(&h2)).unwrap(), Some(second.id));
    assert_eq!(
        find(None, Some(&h3)).unwrap(),
        None,
        "no sheet of that request"
    );
    assert_eq!(
        find(None, None).unwrap(),
        None,
        "two sheets: whose is unknown"
    );

    // In a group commit: the reused key is refused alone, the other sheet stored.
    let group = [keyed(&mut q, "8A", "k", h2), keyed(&mut q, "8A", "k2", h1)];
    let (_, out) = q.commit_group(&[], &group).unwrap();
    assert!(
        matches!(&out[0], Err(QueueError::IdempotencyKeyReused { .. })),
        "{:?}",
        out[0]
    );
    assert!(matches!(&out[1], Ok(Inserted::New(_))), "{:?}", out[1]);
    // Only keyed sheets are in the key's index.
    add(&mut q, "8A", "D");
    let indexed: i64 = q
        .conn
        .query_row(
            "SELECT count(*) FROM sheets INDEXED BY sheets_idempotency WHERE idempotency_key IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexed, 3, "k of 8A, k of 8B, k2 of 8A");
}

/// The day's cap counts participations per professional; the year's, cents with everyone.
#[test]
fn the_participation_day_cap_is_per_professional_and_the_year_cap_for_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let caps = Some(ParticipationCaps {
        per_day_per_professional: 4,
        per_year_cents: 5000,
    });
    let sheet = |q: &mut Queue, pid: &str, entries: Vec<Withheld>| {
        let number = q.allocate_sheet_number(pid).unwrap();
        let mut s = new_sheet(pid, number, "017510001", None);
        s.beneficiary_key = "B".into();
        s.participation = entries;
        s.participation_caps = caps;
        q.insert_sheet(&s).map(|i| i.row().id)
    };
    // Four with A on the 16th (4 × 2 € = 8 €): A's day is full, B's is not.
    sheet(&mut q, "8A", vec![w("20261116", 3, 600)]).unwrap();
    sheet(&mut q, "8A", vec![w("20261116", 1, 200)]).unwrap();
    assert!(matches!(
        sheet(&mut q, "8A", vec![w("20261116", 1, 200)]),
        Err(QueueError::OverCap(why)) if why.contains("8A") && why.contains("5 participations")
    ));
    sheet(&mut q, "8B", vec![w("20261116", 4, 800)]).unwrap();
    assert!(matches!(
        sheet(&mut q, "8B", vec![w("20261116", 1, 200)]),
        Err(QueueError::OverCap(_))
    ));
    assert_eq!(
        q.participation_history("B", "20261116", "20261116")
            .unwrap(),
        [
            rec("20261116", Some("8A"), Some(4), 800),
            rec("20261116", Some("8B"), Some(4), 800)
        ]
    );
    // The year: 16 € so far; 34 € more by C over other days fill it (16 + 34 = 50 €).
    for day in 1..=5 {
        let date = format!("202611{:02}", day);
        let cents = if day == 5 { 200 } else { 800 };
        sheet(&mut q, "8C", vec![w(&date, 4, cents)]).unwrap();
    }
    // 1600 + 4 × 800 + 200 = 5000: not a cent more, with anyone.
    assert!(matches!(
        sheet(&mut q, "8D", vec![w("20261117", 1, 100)]),
        Err(QueueError::OverCap(why)) if why.contains("year")
    ));
    sheet(&mut q, "8D", vec![w("20270104", 1, 200)]).unwrap();

    // A kept line of an unknown professional and count (purged before schema 14) fills the
    // day of every professional; not the other days.
    q.conn
        .execute(
            "INSERT INTO participation_kept (beneficiary, care_date, cents) VALUES ('B', '20270105', 200)",
            [],
        )
        .unwrap();
    for pid in ["8A", "8E"] {
        assert!(matches!(
            sheet(&mut q, pid, vec![w("20270105", 1, 200)]),
            Err(QueueError::OverCap(_))
        ));
    }
    sheet(&mut q, "8E", vec![w("20270106", 1, 200)]).unwrap();
}

/// A schema-13 file with sheets, keys and participation rows: migration 14 gives each row the
/// practitioner of its sheet (kept rows none), leaves the counts and the old keys' hashes
/// unknown, and makes the keys per practitioner.
#[test]
fn a_version_13_database_keeps_its_participation_and_keys_through_migration_14() {
    let sample = fse_formats::fse::CareSheet::sample(1);
    let der = sample.to_der().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..13] {
            let tx = c.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.commit().unwrap();
        }
        c.pragma_update(None, "user_version", 13).unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        for (id, pid, key) in [
            (1, "8A", Some("k1")),
            (2, "8B", Some("k2")),
            (3, "8A", None),
        ] {
            c.execute(
                "INSERT INTO sheets (id, practitioner_id, number, destination, idempotency_key, state, created_at, updated_at, deadline)
                     VALUES (?1, ?2, ?1, 'D', ?3, 'accepted', 'c', 'u', '20261119')",
                rusqlite::params![id, pid, key],
            )
            .unwrap();
            c.execute(
                "INSERT INTO sheet_bodies (sheet_id, der) VALUES (?1, ?2)",
                rusqlite::params![id, der],
            )
            .unwrap();
        }
        c.execute_batch(
            "INSERT INTO counters VALUES ('8A', 4, 1), ('8B', 3, 1);
             INSERT INTO participation VALUES ('B', '20261116', 400, 1);
             INSERT INTO participation VALUES ('B', '20261116', 200, 2);
             INSERT INTO participation VALUES ('B', '20261117', 200, 3);
             INSERT INTO participation_kept VALUES ('B', '20260302', 800);",
        )
        .unwrap();
    }
    let mut q = Queue::open(&path).unwrap();
    assert_eq!(
        q.pragma("user_version").unwrap(),
        crate::schema::latest_version().to_string()
    );
    assert_eq!(
        q.participation_history("B", "20260101", "20261231")
            .unwrap(),
        [
            rec("20260302", None, None, 800),
            rec("20261116", Some("8A"), None, 400),
            rec("20261116", Some("8B"), None, 200),
            rec("20261117", Some("8A"), None, 200),
        ]
    );
    // An old key answers its sheet whatever the request (its hash is unknown), for its
    // practitioner only; another practitioner may use it for a sheet of his own.
    let found = q
        .find_by_idempotency_key(Some("8A"), "k1", Some(&[9; 32]))
        .unwrap()
        .unwrap();
    assert_eq!((found.id, found.der), (1, der.clone()));
    assert_eq!(
        q.find_by_idempotency_key(Some("8B"), "k1", None).unwrap(),
        None
    );
    let mut retry = new_sheet("8A", 10, "D", Some("k1"));
    retry.request_hash = Some([9; 32]);
    assert_eq!(q.insert_sheet(&retry).unwrap().row().id, 1);
    let mut other = new_sheet("8B", 10, "D", Some("k1"));
    other.request_hash = Some([9; 32]);
    assert!(matches!(q.insert_sheet(&other).unwrap(), Inserted::New(r) if r.id > 3));
    // The old rows' counts are unknown: a full day with their professional (8A on the 16th),
    // not with another (8C); the year's cents count for all: 1600 so far.
    let caps = Some(ParticipationCaps {
        per_day_per_professional: 4,
        per_year_cents: 5000,
    });
    let sheet = |pid: &str, number: u64, entries: Vec<Withheld>| {
        let mut s = new_sheet(pid, number, "017510001", None);
        s.beneficiary_key = "B".into();
        s.participation = entries;
        s.participation_caps = caps;
        s
    };
    assert!(matches!(
        q.insert_sheet(&sheet("8A", 11, vec![w("20261116", 1, 200)])),
        Err(QueueError::OverCap(_))
    ));
    q.insert_sheet(&sheet("8C", 1, vec![w("20261116", 1, 200)]))
        .unwrap();
    // 800 + 400 + 200 + 200 + 200 = 1800: 3200 more fill the year, 3300 pass it.
    assert!(matches!(
        q.insert_sheet(&sheet("8C", 2, vec![w("20261201", 1, 3300)])),
        Err(QueueError::OverCap(_))
    ));
    q.insert_sheet(&sheet("8C", 3, vec![w("20261201", 1, 3200)]))
        .unwrap();
    let integrity: String = q
        .conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert!(q.pragma("foreign_keys").unwrap() == "1");
}

/// Sets when a lot was last sent, as a test clock would have stamped it.
fn set_sent_at(q: &Queue, lot_id: &str, at: &str, resends: u32) {
    q.conn
        .execute(
            "UPDATE lots SET sent_at = ?2, resends = ?3 WHERE id = ?1",
            params![lot_id, at, resends],
        )
        .unwrap();
}

#[test]
fn lots_sent_without_an_arl_past_the_timeout_are_selected_for_resending() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    // Four lots of one sheet each: A and B sent, C only signed, D sent and acknowledged.
    let mut ids = Vec::new();
    for _ in 0..4 {
        add(&mut q, "8A", "D");
        let lot = q
            .close_lots(None, 100, "20261201090000Z")
            .unwrap()
            .remove(0);
        q.mark_lot_signed(&lot.id, b"signed lot").unwrap();
        ids.push(lot.id);
    }
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    for l in [a, b, d] {
        assert!(q.mark_lot_sent(l).unwrap());
    }
    assert!(
        lot(&q, a).updated_at <= q.next_resend_from(5).unwrap().unwrap(),
        "sending stamps sent_at"
    );
    q.record_arl(&arl(d, ArlStatus::Positive, vec![]), b"arl")
        .unwrap();
    // Now is 16:00 and the ARL timeout 4 hours: the cutoff is 12:00. A was sent at 10:00
    // (6 hours without an ARL: overdue), B at 13:00 (3 hours: not yet), D at 09:00 but
    // acknowledged.
    let cutoff = "2026-12-01T12:00:00.000Z";
    set_sent_at(&q, a, "2026-12-01T10:00:00.000Z", 0);
    set_sent_at(&q, b, "2026-12-01T13:00:00.000Z", 0);
    set_sent_at(&q, d, "2026-12-01T09:00:00.000Z", 0);
    let due: Vec<String> = q
        .lots_to_resend(cutoff, 5)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(due, vec![a.clone()]);
    // The cutoff itself is due (sent exactly 4 hours before now).
    assert_eq!(
        q.lots_to_resend("2026-12-01T10:00:00.000Z", 5)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        q.lots_to_resend("2026-12-01T09:59:59.999Z", 5)
            .unwrap()
            .len(),
        0
    );
    // The next resend counts from the oldest sending without an ARL: A's.
    assert_eq!(
        q.next_resend_from(5).unwrap().as_deref(),
        Some("2026-12-01T10:00:00.000Z")
    );
    let alarms = q.arl_alarms(cutoff, 5).unwrap();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(
        (&alarms[0].lot_id, alarms[0].resends, alarms[0].given_up),
        (a, 0, false)
    );
    assert_eq!(alarms[0].sheet_count, 1);

    // Sent again: counted, and waited for from now (after the cutoff): no longer due, still
    // an alarm.
    assert_eq!(q.mark_lot_resent(a).unwrap(), Some(1));
    assert!(q.lots_to_resend(cutoff, 5).unwrap().is_empty());
    let alarms = q.arl_alarms(cutoff, 5).unwrap();
    assert_eq!(
        (alarms.len(), alarms[0].resends, alarms[0].given_up),
        (1, 1, false)
    );
    assert_eq!(
        q.resend_stats(cutoff, 5).unwrap(),
        ResendStats {
            total: 1,
            waiting: 1,
            given_up: 0
        }
    );
    let resent: Vec<EventRow> = q
        .events_since(0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "lot.resent")
        .collect();
    assert_eq!(resent.len(), 1);
    assert_eq!(
        (&resent[0].subject, resent[0].detail.as_str()),
        (a, r#"{"attempt":1}"#)
    );

    // Five resends made and the last one unanswered past the timeout: no more resends, the
    // alarm stays, given up.
    set_sent_at(&q, a, "2026-12-01T10:00:00.000Z", 5);
    assert!(q.lots_to_resend(cutoff, 5).unwrap().is_empty());
    assert_eq!(
        q.next_resend_from(5).unwrap().as_deref(),
        Some("2026-12-01T13:00:00.000Z")
    );
    let alarms = q.arl_alarms(cutoff, 5).unwrap();
    assert_eq!((alarms[0].resends, alarms[0].given_up), (5, true));
    // A higher limit (after a reload) sends it again.
    assert_eq!(q.lots_to_resend(cutoff, 6).unwrap().len(), 1);
    // Total 5 (A's resends); A given up, none still waiting.
    assert_eq!(
        q.resend_stats(cutoff, 5).unwrap(),
        ResendStats {
            total: 5,
            waiting: 0,
            given_up: 1
        }
    );

    // The ARL comes at last: no alarm, no resend; the count stays in the total.
    q.record_arl(&arl(a, ArlStatus::Positive, vec![]), b"arl")
        .unwrap();
    assert!(q.arl_alarms(cutoff, 5).unwrap().is_empty());
    assert_eq!(q.resend_stats(cutoff, 5).unwrap().total, 5);
    // A lot no longer sent is not counted again; an unknown lot is not found; a lot only
    // signed is never resent.
    assert_eq!(q.mark_lot_resent(a).unwrap(), None);
    assert_eq!(q.resend_stats(cutoff, 5).unwrap().total, 5);
    assert!(matches!(
        q.mark_lot_resent("nope"),
        Err(QueueError::NotFound(_))
    ));
    assert_eq!(q.mark_lot_resent(c).unwrap(), None);

    // The time since sending is stored: a reopened queue selects the same lots.
    set_sent_at(&q, b, "2026-12-01T11:00:00.000Z", 2);
    drop(q);
    let q = open(&dir);
    let due: Vec<String> = q
        .lots_to_resend(cutoff, 5)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(due, vec![b.clone()]);
    // Resends left (2 of 5): not given up.
    assert!(!q.arl_alarms(cutoff, 5).unwrap()[0].given_up);
}

#[test]
fn lots_sent_before_the_resend_columns_count_from_their_last_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        // A file at the schema before the resend columns, holding one lot sent.
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        crate::integrity::register_functions(&conn).unwrap();
        let before = schema::MIGRATIONS
            .iter()
            .position(|m| m.contains("ADD COLUMN sent_at"))
            .unwrap();
        for (i, sql) in schema::MIGRATIONS[..before].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", i + 1).unwrap();
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        conn.execute(
            "INSERT INTO lots (id, practitioner_id, number, destination, state, sheet_count, signed_der, closed_at, updated_at, seq, checksum)
             VALUES ('8A-00000001', '8A', 1, 'D', 'sent', 0, x'00', '20261201090000Z', '2026-12-01T09:30:00.000Z', 1,
                     fsed_lot_checksum('8A-00000001', x'00', NULL))",
            [],
        )
        .unwrap();
        drop(conn.transaction().unwrap());
    }
    let q = Queue::open(&path).unwrap();
    assert_eq!(
        q.next_resend_from(5).unwrap().as_deref(),
        Some("2026-12-01T09:30:00.000Z")
    );
    assert_eq!(
        q.lots_to_resend("2026-12-01T12:00:00.000Z", 5)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn dead_lettered_returns_are_counted_per_reason_across_a_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    assert!(q.stats().unwrap().dead_letters.is_empty());
    q.record_dead_letter(
        "bad_signature",
        Some("L-1"),
        json!({"reason": "bad_signature"}),
    )
    .unwrap();
    q.record_dead_letter("wrong_insurer", None, json!({"reason": "wrong_insurer"}))
        .unwrap();
    q.record_dead_letter(
        "bad_signature",
        Some("L-2"),
        json!({"reason": "bad_signature"}),
    )
    .unwrap();
    drop(q);
    let q = open(&dir);
    // Two bad signatures (L-1, L-2) and one wrong insurer.
    let counts = q.stats().unwrap().dead_letters;
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![
            ("bad_signature".to_string(), 2),
            ("wrong_insurer".to_string(), 1)
        ]
    );
    let events = q.events_since(0, 100).unwrap();
    let dead: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "return.dead_lettered")
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(dead, ["L-1", "-", "L-2"]);
}
