//! Opening: settings, further connections, reopening, copies, and the files refused untouched.

use super::*;

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
fn a_connection_caps_its_cache_and_gives_it_back_keeping_what_it_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = open(&dir);
    // 32 MiB by default, given as a negative count of KiB.
    assert_eq!(q.pragma("cache_size").unwrap(), "-32768");
    let reader = q.another_connection().unwrap();
    reader.set_cache_kib(256).unwrap();
    assert_eq!(reader.pragma("cache_size").unwrap(), "-256");
    let row = add(&mut q, "10000000001", "017510001");
    assert_eq!(reader.get_sheet(row.id).unwrap().unwrap().der, row.der);
    reader.release_memory().unwrap();
    q.release_memory().unwrap();
    // Nothing is lost with the cache: the pages are read again.
    assert_eq!(reader.get_sheet(row.id).unwrap().unwrap().der, row.der);
    assert_eq!(reader.pragma("cache_size").unwrap(), "-256");
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
    q.close_lots(None, 10, t("20261122110000Z")).unwrap();
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
        q.find_by_idempotency_key(Some(&p("8C")), "k", None)
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
        |e| matches!(e, QueueError::Corrupt { detail, .. } if detail.to_string().contains("not an fsed database")),
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
