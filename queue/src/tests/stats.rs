//! Figures and names: states, row stamps, the backlog and dead letters.

use serde_json::json;

use super::*;
use crate::events::stamp;

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
        s.created_at = t(created);
        s.deadline = Some(deadline.into());
        ids.push(q.insert_sheet(&s).unwrap().row().id);
    }
    let b = q.backlog().unwrap();
    assert_eq!(b.unsent, 2);
    assert_eq!(
        b.oldest_created_at.map(|t| t.to_string()).as_deref(),
        Some("20261120080000Z")
    );
    assert_eq!(b.nearest_deadline.as_deref(), Some("20270115"));
    assert!(b.last_event_at.is_some());
    q.cancel_sheet(ids[1], "patient left").unwrap();
    let b = q.backlog().unwrap();
    assert_eq!(
        (b.unsent, b.nearest_deadline.as_deref()),
        (1, Some("20270301"))
    );
    // A sheet in a lot closed or signed still waits; once the lot is sent it no longer does.
    let lots = q.close_lots(None, 100, t("20261122100000Z")).unwrap();
    let unsent = |q: &Queue| q.backlog().unwrap().unsent;
    assert_eq!(unsent(&q), 1);
    q.mark_lot_signed(&lots[0].id, b"signed lot").unwrap();
    assert_eq!(unsent(&q), 1);
    let mut s = new_sheet("PS1", 3, "017510001", None);
    s.created_at = t("20261122080000Z");
    q.insert_sheet(&s).unwrap();
    let b = q.backlog().unwrap();
    assert_eq!(
        (
            b.unsent,
            b.oldest_created_at.map(|t| t.to_string()).as_deref()
        ),
        (2, Some("20261120080000Z"))
    );
    assert!(q.mark_lot_sent(&lots[0].id).unwrap());
    let b = q.backlog().unwrap();
    assert_eq!(
        (
            b.unsent,
            b.oldest_created_at.map(|t| t.to_string()).as_deref()
        ),
        (1, Some("20261122080000Z"))
    );
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
        assert_eq!(Stamp::at(at).to_string(), want);
        assert_eq!(
            Stamp::at(at).to_string(),
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
