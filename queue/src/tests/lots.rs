//! Lots: closing, signing, sending, DRE lots, the partial indexes and resending.

use rusqlite::params;

use super::*;
use crate::lots::{MOVE_INTO_LOT, MOVE_SHEETS, OPEN_GROUPS, OPEN_SHEETS_OF_GROUP};
use crate::sheets::{INSERT_SHEET, SHEETS_BY_KEY, SHEET_BY_KEY};
use crate::stats::BACKLOG;

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

    lifecycle_close(&mut q, &a, &b);
    lifecycle_sign_and_send(&mut q, &a, &b);
    lifecycle_acknowledge(&mut q, &a, &b);
    lifecycle_stats_and_events(&q);
}

/// [`full_lifecycle_accepted_to_acknowledged`]: the two accepted sheets `a` and `b` close
/// into one lot, waiting for its signature.
fn lifecycle_close(q: &mut Queue, a: &SheetRow, b: &SheetRow) {
    let lots = q.close_lots(None, 10, t("20261122110000Z")).unwrap();
    assert_eq!(lots.len(), 1);
    let l = &lots[0];
    assert_eq!(
        (
            l.id.as_str(),
            l.number,
            l.destination.as_str(),
            l.state,
            l.sheet_count,
            l.closed_at.text().as_str()
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
        let s = sheet(q, s.id);
        assert_eq!(
            (s.state, s.lot_id.as_deref()),
            (SheetState::InLot, Some("8A-00000001"))
        );
    }
    assert_eq!(q.lots_to_sign(None).unwrap(), lots);
    assert_eq!(q.lots_to_sign(Some(&p("8A"))).unwrap(), lots);
    assert!(q.lots_to_sign(Some(&p("8B"))).unwrap().is_empty());
    assert!(q.lots_to_send().unwrap().is_empty());
    let ids: Vec<SheetId> = q.lot_sheets(&l.id).unwrap().iter().map(|s| s.id).collect();
    assert_eq!(ids, [a.id, b.id]);
}

/// [`full_lifecycle_accepted_to_acknowledged`]: the lot is signed, then sent, once.
fn lifecycle_sign_and_send(q: &mut Queue, a: &SheetRow, b: &SheetRow) {
    q.mark_lot_signed(&l("8A-00000001"), b"signed").unwrap();
    assert!(q.lots_to_sign(None).unwrap().is_empty());
    let to_send = q.lots_to_send().unwrap();
    assert_eq!(to_send.len(), 1);
    assert_eq!(
        (to_send[0].state, to_send[0].signed_der.as_deref()),
        (LotState::Signed, Some(&b"signed"[..]))
    );
    assert_eq!(sheet(q, a.id).state, SheetState::Signed);

    assert!(q.mark_lot_sent(&l("8A-00000001")).unwrap());
    assert!(q.lots_to_send().unwrap().is_empty());
    assert_eq!(lot(q, "8A-00000001").state, LotState::Sent);
    assert_eq!(sheet(q, b.id).state, SheetState::Sent);
    assert!(
        !q.mark_lot_sent(&l("8A-00000001")).unwrap(),
        "already sent: no change"
    );
}

/// [`full_lifecycle_accepted_to_acknowledged`]: a positive ARL acknowledges the lot and both
/// sheets, and is stored.
fn lifecycle_acknowledge(q: &mut Queue, a: &SheetRow, b: &SheetRow) {
    let positive = arl("8A-00000001", ArlStatus::Positive, vec![]);
    assert_eq!(
        q.record_arl(&positive, b"arl der").unwrap(),
        ArlOutcome::Applied
    );
    assert_eq!(lot(q, "8A-00000001").state, LotState::Acknowledged);
    for s in [&a, &b] {
        let s = sheet(q, s.id);
        assert_eq!((s.state, s.reason), (SheetState::Acknowledged, None));
    }
    let ack = q.get_ack(&l("8A-00000001")).unwrap().unwrap();
    assert_eq!(
        (ack.status, ack.der.as_slice(), ack.received_at.as_str()),
        (ArlStatus::Positive, &b"arl der"[..], "20261122120000Z")
    );
    assert!(
        !q.mark_lot_sent(&l("8A-00000001")).unwrap(),
        "acknowledged: no change"
    );
}

/// [`full_lifecycle_accepted_to_acknowledged`]: the counts per state and the events of the
/// whole life, in order.
fn lifecycle_stats_and_events(q: &Queue) {
    let stats = q.stats().unwrap();
    assert_eq!(stats.sheets["acknowledged"], 2);
    assert_eq!(stats.sheets["accepted"], 0);
    assert_eq!(stats.lots["acknowledged"], 1);
    assert_eq!(stats.lots.len(), LotState::ALL.len());
    assert_eq!(
        kinds(q),
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
    // The sheet's event: its detail stored member for member as a JSON object sorts them,
    // and read back as that object.
    let stored: String = q
        .conn
        .query_row(
            "SELECT detail FROM events WHERE id = ?1",
            [events[1].id],
            |r| r.get(0),
        )
        .unwrap();
    let want =
        r#"{"destination":"017510001","idempotency_key":null,"number":1,"practitioner_id":"8A"}"#;
    assert_eq!(stored, want);
    assert_eq!(events[1].detail.to_string(), want);
    let arl_event = events.last().unwrap();
    assert_eq!(arl_event.subject, "8A-00000001");
    let detail: serde_json::Value = arl_event.detail.clone();
    assert_eq!(
        (detail["acknowledged"].as_u64(), detail["rejected"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(q.events_since(events[5].id, 100).unwrap().len(), 2);
    assert_eq!(q.events_since(0, 3).unwrap().len(), 3);
}

#[test]
fn close_lots_splits_by_practitioner_destination_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let d1: Vec<SheetRow> = (0..5).map(|_| add(&mut q, "8A", "D1")).collect();
    let d2 = add(&mut q, "8A", "D2");
    let other = add(&mut q, "8B", "D1");

    // One practitioner only.
    let lots = q
        .close_lots(Some(&p("8B")), 2, t("20261122110001Z"))
        .unwrap();
    assert_eq!(
        lots.iter()
            .map(|l| (l.id.as_str(), l.sheet_count))
            .collect::<Vec<_>>(),
        [("8B-00000001", 1)]
    );
    assert_eq!(sheet(&q, other.id).lot_id.as_deref(), Some("8B-00000001"));
    assert_eq!(sheet(&q, d2.id).state, SheetState::Accepted);

    let lots = q.close_lots(None, 2, t("20261122110002Z")).unwrap();
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
        .all(|l| l.closed_at == t("20261122110002Z") && l.state == LotState::Closed));
    // Sheets go in insertion order, each in exactly one lot.
    let members = |id: &str| -> Vec<SheetId> {
        q.lot_sheets(&LotId::new(id))
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(members("8A-00000001"), [d1[0].id, d1[1].id]);
    assert_eq!(members("8A-00000002"), [d1[2].id, d1[3].id]);
    assert_eq!(members("8A-00000003"), [d1[4].id]);
    assert_eq!(members("8A-00000004"), [d2.id]);
    assert_eq!(q.stats().unwrap().sheets["in_lot"], 7);

    // Nothing left to close; oldest first for signing, newest first in the list.
    assert!(q
        .close_lots(None, 2, t("20261122110003Z"))
        .unwrap()
        .is_empty());
    let to_sign: Vec<LotId> = q
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
    let listed: Vec<LotId> = q.list_lots(2).unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(listed, ["8A-00000004", "8A-00000003"]);

    // max_sheets 0 is taken as 1.
    add(&mut q, "8A", "D1");
    add(&mut q, "8A", "D1");
    assert_eq!(
        q.close_lots(None, 0, t("20261122110004Z")).unwrap().len(),
        2
    );
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
        q.mark_lot_signed(&l("nope"), b"x"),
        Err(QueueError::NotFound(_))
    ));
    assert!(matches!(
        q.mark_lot_sent(&l("nope")),
        Err(QueueError::NotFound(_))
    ));

    // A closed lot cannot be sent before it is signed.
    add(&mut q, "8A", "D");
    let closed = q.close_lots(None, 10, t("20261122110000Z")).unwrap();
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
fn dre_lots_are_stored_with_their_lot_sent_once_and_kept_until_sent() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    let _ = add(&mut q, "8A", "D");
    let lots = q.close_lots(None, 100, t("20261122110000Z")).unwrap();
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
    let lots = q.close_full_lots(2, t("20261122110000Z")).unwrap();
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
    assert_eq!(
        q.close_lots(None, 2, t("20261122110000Z")).unwrap().len(),
        2
    );
    assert_eq!(q.accepted_summary(100).unwrap(), (0, None));
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
    let lots = q.close_lots(None, 2, t("20261122100000Z")).unwrap();
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
    let ids = four_lots_two_sent_one_signed_one_acknowledged(&mut q);
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // Now is 16:00 and the ARL timeout 4 hours: the cutoff is 12:00. A was sent at 10:00
    // (6 hours without an ARL: overdue), B at 13:00 (3 hours: not yet), D at 09:00 but
    // acknowledged.
    let cutoff = st("2026-12-01T12:00:00.000Z");
    set_sent_at(&q, a, "2026-12-01T10:00:00.000Z", 0);
    set_sent_at(&q, b, "2026-12-01T13:00:00.000Z", 0);
    set_sent_at(&q, d, "2026-12-01T09:00:00.000Z", 0);
    resend_only_the_overdue_lot(&q, a, cutoff);
    resend_counted_then_given_up(&mut q, a, cutoff);

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
        q.mark_lot_resent(&l("nope")),
        Err(QueueError::NotFound(_))
    ));
    assert_eq!(q.mark_lot_resent(c).unwrap(), None);

    // The time since sending is stored: a reopened queue selects the same lots.
    set_sent_at(&q, b, "2026-12-01T11:00:00.000Z", 2);
    drop(q);
    let q = open(&dir);
    let due: Vec<LotId> = q
        .lots_to_resend(cutoff, 5)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(due, vec![b.clone()]);
    // Resends left (2 of 5): not given up.
    assert!(!q.arl_alarms(cutoff, 5).unwrap()[0].given_up);
}

/// Four lots of one sheet each: A and B sent, C only signed, D sent and acknowledged; their
/// ids in that order.
fn four_lots_two_sent_one_signed_one_acknowledged(q: &mut Queue) -> Vec<LotId> {
    let mut ids = Vec::new();
    for _ in 0..4 {
        add(q, "8A", "D");
        let lot = q
            .close_lots(None, 100, t("20261201090000Z"))
            .unwrap()
            .remove(0);
        q.mark_lot_signed(&lot.id, b"signed lot").unwrap();
        ids.push(lot.id);
    }
    let (a, b, d) = (&ids[0], &ids[1], &ids[3]);
    for l in [a, b, d] {
        assert!(q.mark_lot_sent(l).unwrap());
    }
    assert!(
        lot(q, a).updated_at <= q.next_resend_from(5).unwrap().unwrap(),
        "sending stamps sent_at"
    );
    q.record_arl(&arl(d, ArlStatus::Positive, vec![]), b"arl")
        .unwrap();
    ids
}

/// With A sent at 10:00, B at 13:00 and the cutoff `cutoff` at 12:00, only `a` is due for
/// resending and in the alarms.
fn resend_only_the_overdue_lot(q: &Queue, a: &LotId, cutoff: Stamp) {
    let due: Vec<LotId> = q
        .lots_to_resend(cutoff, 5)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(due, vec![a.clone()]);
    // The cutoff itself is due (sent exactly 4 hours before now).
    assert_eq!(
        q.lots_to_resend(st("2026-12-01T10:00:00.000Z"), 5)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        q.lots_to_resend(st("2026-12-01T09:59:59.999Z"), 5)
            .unwrap()
            .len(),
        0
    );
    // The next resend counts from the oldest sending without an ARL: A's.
    assert_eq!(
        q.next_resend_from(5)
            .unwrap()
            .map(|s| s.to_string())
            .as_deref(),
        Some("2026-12-01T10:00:00.000Z")
    );
    let alarms = q.arl_alarms(cutoff, 5).unwrap();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(
        (
            alarms[0].lot_id.as_str(),
            alarms[0].resends,
            alarms[0].given_up
        ),
        (a.as_str(), 0, false)
    );
    assert_eq!(alarms[0].sheet_count, 1);
}

/// Lot `a`, overdue at `cutoff`, sent again once, then five times and still unanswered.
fn resend_counted_then_given_up(q: &mut Queue, a: &LotId, cutoff: Stamp) {
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
        (resent[0].subject.as_str(), resent[0].detail.to_string()),
        (a.as_str(), r#"{"attempt":1}"#.to_string())
    );

    // Five resends made and the last one unanswered past the timeout: no more resends, the
    // alarm stays, given up.
    set_sent_at(q, a, "2026-12-01T10:00:00.000Z", 5);
    assert!(q.lots_to_resend(cutoff, 5).unwrap().is_empty());
    assert_eq!(
        q.next_resend_from(5)
            .unwrap()
            .map(|s| s.to_string())
            .as_deref(),
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
}

#[test]
fn lots_sent_before_the_resend_columns_count_from_their_last_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        // A file at the schema before the resend columns, holding one lot sent.
        let mut conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "foreign_keys", false).unwrap();
        crate::checksum::register_functions(&conn).unwrap();
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
        q.next_resend_from(5)
            .unwrap()
            .map(|s| s.to_string())
            .as_deref(),
        Some("2026-12-01T09:30:00.000Z")
    );
    assert_eq!(
        q.lots_to_resend(st("2026-12-01T12:00:00.000Z"), 5)
            .unwrap()
            .len(),
        1
    );
}
