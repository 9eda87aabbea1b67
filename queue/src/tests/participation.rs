//! Participation forfaitaire: its history and the caps a new sheet is held to.

use super::*;

#[test]
fn participation_history_is_kept_per_beneficiary_and_date_with_the_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(&dir.path().join("q.db")).unwrap();
    let pid = "810000000009";
    let insert = |q: &mut Queue, who: &str, entries: Vec<(&str, u64)>, dre: Option<Vec<u8>>| {
        let number = q.allocate_sheet_number(&p(pid)).unwrap();
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
    assert_eq!(
        q.sheet_dre(SheetId(a.id.get() + 1)).unwrap(),
        Some(vec![0x30, 0])
    );
    // Kept across a reopen: the caps hold after a restart.
    drop(q);
    let q = Queue::open(&dir.path().join("q.db")).unwrap();
    assert_eq!(
        q.participation_history("A", "20261116", "20261116")
            .unwrap(),
        vec![rec("20261116", Some(pid), Some(2), 400)]
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
        let number = q.allocate_sheet_number(&p(pid)).unwrap();
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
        let number = q.allocate_sheet_number(&p(pid)).unwrap();
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
        let number = q.allocate_sheet_number(&p(pid)).unwrap();
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
