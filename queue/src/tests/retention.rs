//! Retention and deadlines: purging acknowledged lots, deadline alarms.

use super::*;

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
    let lots = q.close_lots(None, 10, t("20261117120000Z")).unwrap();
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
    let lots = q.close_lots(None, 2, t("20261117120000Z")).unwrap();
    assert_eq!(lots.len(), 2);
    for l in &lots {
        q.mark_lot_signed(&l.id, b"signed").unwrap();
        q.mark_lot_sent(&l.id).unwrap();
    }
    q.record_arl(&arl(&lots[0].id, ArlStatus::Positive, vec![]), b"arl")
        .unwrap();
    // Not acknowledged yet: refused.
    assert!(q.purge_lot(&lots[1].id).is_err());
    let due = q.lots_to_purge(st("9999-12-31T00:00:00.000Z")).unwrap();
    assert_eq!(
        due.iter().map(|l| &l.id).collect::<Vec<_>>(),
        vec![&lots[0].id]
    );
    assert!(q
        .lots_to_purge(st("2000-01-01T00:00:00.000Z"))
        .unwrap()
        .is_empty());
    assert_eq!(q.purge_lot(&lots[0].id).unwrap(), 2);
    assert!(q.get_lot(&lots[0].id).unwrap().is_none());
    assert!(q.get_ack(&lots[0].id).unwrap().is_none());
    assert_eq!(q.list_sheets(None, 10, SheetId(0)).unwrap().len(), 1);
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
