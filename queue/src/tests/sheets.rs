//! Sheets: inserts, idempotency keys, numbers, group commits, listing, cancelling and resubmitting.

use rusqlite::params;

use super::*;

#[test]
fn idempotent_insert_returns_the_existing_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let n = q.allocate_sheet_number(&p("8A")).unwrap();
    let first = match q
        .insert_sheet(&new_sheet("8A", n, "D", Some("key-1")))
        .unwrap()
    {
        Inserted::New(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        q.find_by_idempotency_key(Some(&p("8A")), "key-1", None)
            .unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        q.find_by_idempotency_key(Some(&p("8A")), "key-2", None)
            .unwrap(),
        None
    );
    assert_eq!(
        q.find_by_idempotency_key(Some(&p("8B")), "key-1", None)
            .unwrap(),
        None,
        "another practitioner's key"
    );
    let events = q.events_since(0, 100).unwrap().len();

    // A retry of the same call, even with a new number: nothing inserted.
    let n2 = q.allocate_sheet_number(&p("8A")).unwrap();
    let again = q
        .insert_sheet(&new_sheet("8A", n2, "D", Some("key-1")))
        .unwrap();
    assert_eq!(again, Inserted::Existing(first.clone()));
    assert_eq!(
        q.list_sheets(None, 100, SheetId(0)).unwrap(),
        std::slice::from_ref(&first)
    );
    assert_eq!(
        q.events_since(0, 100).unwrap().len(),
        events + 1,
        "only the number allocation"
    );

    // Also once the sheet has moved on.
    q.close_lots(None, 10, t("20261122110000Z")).unwrap();
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
    assert_eq!(q.allocate_sheet_number(&p("8A")).unwrap(), 11);
    assert_eq!(q.allocate_sheet_number(&p("8B")).unwrap(), s.number + 1);
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
        q.allocate_sheet_number(&p("8A")).unwrap(),
        1,
        "allocated, never inserted"
    );
    let s = add(&mut q, "8A", "D");
    assert_eq!(s.number, 2);
    assert_eq!(
        q.allocate_sheet_number(&p("8B")).unwrap(),
        1,
        "per practitioner"
    );
    assert_eq!(
        q.close_lots(None, 10, t("20261122110000Z")).unwrap()[0].number,
        1
    );
    drop(q);

    let mut q = open(&dir);
    assert_eq!(q.allocate_sheet_number(&p("8A")).unwrap(), 3);
    assert_eq!(q.allocate_sheet_number(&p("8B")).unwrap(), 2);
    add(&mut q, "8A", "D");
    let lots = q.close_lots(None, 10, t("20261122110000Z")).unwrap();
    assert_eq!((lots[0].number, lots[0].id.as_str()), (2, "8A-00000002"));
    drop(q);

    let mut q = open(&dir);
    assert_eq!(q.allocate_sheet_number(&p("8A")).unwrap(), 5);
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
fn list_sheets_pages_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let all: Vec<SheetRow> = (0..5).map(|_| add(&mut q, "8A", "D")).collect();
    q.close_lots(None, 2, t("20261122110000Z")).unwrap(); // lots of 2, 2, 1: all in_lot
    add(&mut q, "8A", "D");
    let page = q.list_sheets(None, 2, SheetId(0)).unwrap();
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
        q.list_sheets(Some(SheetState::InLot), 100, SheetId(0))
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        q.list_sheets(Some(SheetState::Accepted), 100, SheetId(0))
            .unwrap()
            .len(),
        1
    );
    assert!(q
        .list_sheets(Some(SheetState::Sent), 100, SheetId(0))
        .unwrap()
        .is_empty());
    assert_eq!(
        q.list_sheets(None, usize::MAX, SheetId(0)).unwrap().len(),
        6
    );
}

#[test]
fn a_group_commit_stores_each_sheet_or_refuses_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    let first = q.reserve_sheet_numbers(&p("8A"), 10).unwrap();
    assert_eq!(first, 1);
    // The next reservation starts after the whole block, even unused.
    assert_eq!(q.reserve_sheet_numbers(&p("8A"), 1).unwrap(), 11);
    assert!(q.reserve_sheet_numbers(&p("8A"), 0).is_err());
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
    let stored = q.list_sheets(None, 100, SheetId(0)).unwrap();
    let numbers: Vec<u64> = stored.iter().map(|s| s.number).collect();
    assert_eq!(numbers, vec![1, 2, 4]);
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
        q.cancel_sheet(SheetId(999), "x"),
        Err(QueueError::NotFound(_))
    ));
    // The cancelled sheet stays out of lots.
    let lots = q.close_lots(None, 10, t("20261117120000Z")).unwrap();
    assert_eq!(lots.len(), 1);
    assert_eq!(lots[0].sheet_count, 1);
    assert!(matches!(
        q.cancel_sheet(b.id, "too late"),
        Err(QueueError::InvalidTransition { .. })
    ));
}

#[test]
fn a_rejected_sheet_is_resubmitted_into_a_new_lot() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    let a = add(&mut q, "8A", "D");
    let lot = q
        .close_lots(None, 10, t("20261122110000Z"))
        .unwrap()
        .remove(0);
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
    let again = q
        .close_lots(None, 10, t("20261122110002Z"))
        .unwrap()
        .remove(0);
    assert_ne!(again.id, lot.id);
    assert_eq!(sheet(&q, a.id).lot_id.as_deref(), Some(again.id.as_str()));
    assert!(matches!(
        q.resubmit_sheet(SheetId(999)),
        Err(QueueError::NotFound(_))
    ));
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
        let number = q.allocate_sheet_number(&p(pid)).unwrap();
        sheets.push(new_sheet(pid, number, "017510001", None));
    }
    let close = GroupWrite::CloseLots {
        practitioner_id: None,
        max_sheets: 2,
        now: t("20261130120000Z"),
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
    let number = q.allocate_sheet_number(&p(pid)).unwrap();
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
fn a_sheet_read_back_has_its_der_and_a_damaged_der_is_an_error() {
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
    assert_eq!(back.der, new.der);
    let by_key = q
        .find_by_idempotency_key(Some(&p("810000000009")), "k", None)
        .unwrap()
        .unwrap();
    assert_eq!(by_key.der, new.der);
    // A DER that no longer decodes, its checksum made to match: the decoding catches it.
    let checksum = crate::sheet_checksum(row.id.get(), &[0x30, 0x00], None);
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
        let number = q.allocate_sheet_number(&p(pid)).unwrap();
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
    assert_eq!(q.list_sheets(None, 10, SheetId(0)).unwrap().len(), 1);
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
        q.find_by_idempotency_key(pid.map(p).as_ref(), "k", hash)
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
