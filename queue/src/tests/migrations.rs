//! Migrations: older databases keep their data through each schema change.

use super::*;

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
             INSERT INTO lots VALUES ('8A-00000002', '8A', 2, 'D', 'closed', 1, NULL, '20261116093000Z', '2026-11-16T09:30:00.000Z');
             INSERT INTO lots VALUES ('8A-00000001', '8A', 1, 'D', 'closed', 1, NULL, '20261116093000Z', '2026-11-16T09:30:00.000Z');
             INSERT INTO sheets VALUES (1, '8A', 1, 'D', NULL, 'in_lot', '8A-00000002', x'30', '{}', NULL, '20261116080000Z', '2026-11-16T09:30:00.000Z');
             INSERT INTO sheets VALUES (2, '8A', 2, 'D', NULL, 'in_lot', '8A-00000001', x'30', '{}', NULL, '20261116080000Z', '2026-11-16T09:30:00.000Z');",
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
    let ids: Vec<LotId> = q
        .lots_to_sign(None)
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(ids, ["8A-00000002", "8A-00000001"]);
    assert_eq!(q.allocate_sheet_number(&p("8A")).unwrap(), 3);
    add(&mut q, "8A", "D");
    assert_eq!(
        q.close_lots(None, 10, t("20261122110000Z")).unwrap()[0].id,
        "8A-00000003"
    );
    assert_eq!(
        q.lots_to_sign(None).unwrap().last().unwrap().id,
        "8A-00000003"
    );
    drop(q);
    // And it opens again as an fsed database.
    Queue::open(&path).unwrap();
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
                 VALUES (7, '8A', 1, 'D', 'k', 'accepted', ?1, ?2, '20261116080000Z', '2026-11-16T09:30:00.000Z', '20261119')",
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
        .find_by_idempotency_key(Some(&p("8A")), "k", None)
        .unwrap()
        .unwrap();
    assert_eq!(
        (s.id, s.number, s.state),
        (SheetId(7), 1, SheetState::Accepted)
    );
    // Its body moved to its own table (migration 10), its JSON is rendered from its DER
    // (migration 13): the same text.
    assert_eq!(s.der, sample.to_der().unwrap());
    let rendered = serde_json::to_string(&fse_formats::fse::CareSheet::from_der(&s.der).unwrap());
    assert_eq!(rendered.unwrap(), json);
    assert_eq!(q.deadline_alarms("20261119").unwrap().len(), 1);
    // Its professional from its sheet (migration 14), its count unknown.
    assert_eq!(
        q.participation_history("B", "20260101", "20261231")
            .unwrap(),
        vec![rec("20261116", Some("8A"), None, 200)]
    );
    assert_eq!(
        q.cancel_sheet(SheetId(7), "test").unwrap().state,
        SheetState::Cancelled
    );
    assert!(q.pragma("foreign_keys").unwrap() == "1");
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
                     VALUES (?1, ?2, ?1, 'D', ?3, 'accepted', '20261116080000Z', '2026-11-16T09:30:00.000Z', '20261119')",
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
        .find_by_idempotency_key(Some(&p("8A")), "k1", Some(&[9; 32]))
        .unwrap()
        .unwrap();
    assert_eq!((found.id, found.der), (SheetId(1), der.clone()));
    assert_eq!(
        q.find_by_idempotency_key(Some(&p("8B")), "k1", None)
            .unwrap(),
        None
    );
    let mut retry = new_sheet("8A", 10, "D", Some("k1"));
    retry.request_hash = Some([9; 32]);
    assert_eq!(q.insert_sheet(&retry).unwrap().row().id, SheetId(1));
    let mut other = new_sheet("8B", 10, "D", Some("k1"));
    other.request_hash = Some([9; 32]);
    assert!(matches!(q.insert_sheet(&other).unwrap(), Inserted::New(r) if r.id > SheetId(3)));
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
