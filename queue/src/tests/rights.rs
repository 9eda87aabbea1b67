use super::*;

#[test]
fn rights_cache_keeps_the_last_entry_and_refuses_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    assert_eq!(
        q.get_rights("185057800608469", "19850512", 1).unwrap(),
        None
    );
    let mut e = RightsEntry {
        nir: "185057800608469".into(),
        birth_date: "19850512".into(),
        rank: 1,
        source: RightsSourceKind::Card,
        body: vec![0x30, 0x00],
        fetched_at: st("2026-12-07T10:00:00.000Z"),
    };
    q.put_rights(&e).unwrap();
    assert_eq!(
        q.get_rights(&e.nir, &e.birth_date, 1).unwrap(),
        Some(e.clone())
    );
    e.source = RightsSourceKind::Online;
    e.body = vec![0x30, 0x03, 0x02, 0x01, 0x01];
    q.put_rights(&e).unwrap();
    assert_eq!(
        q.get_rights(&e.nir, &e.birth_date, 1).unwrap(),
        Some(e.clone())
    );
    // Another rank is another beneficiary.
    assert_eq!(q.get_rights(&e.nir, &e.birth_date, 2).unwrap(), None);
    // A body changed behind the queue's back is not served.
    q.conn
        .execute("UPDATE rights_cache SET body = X'3000'", [])
        .unwrap();
    assert!(matches!(
        q.get_rights(&e.nir, &e.birth_date, 1),
        Err(QueueError::Damaged(_))
    ));
}
