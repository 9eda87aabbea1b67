//! The schema and its migrations: each brings the file one version further,
//! in one transaction together with `PRAGMA user_version` and the fsed
//! `application_id`. An applied migration is never edited; a change is a new
//! migration at the end of the list.

use rusqlite::{Connection, TransactionBehavior};

use crate::QueueError;

/// `PRAGMA application_id` of an fsed database: "FSED" in ASCII.
pub const APPLICATION_ID: i32 = 0x4653_4544;

/// Migration `n` brings the schema from version `n` to `n + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: counters, lots, sheets, ARLs, events.
    r#"
CREATE TABLE counters (
    practitioner_id TEXT PRIMARY KEY,
    next_sheet      INTEGER NOT NULL,
    next_lot        INTEGER NOT NULL
);
CREATE TABLE lots (
    id              TEXT PRIMARY KEY,
    practitioner_id TEXT NOT NULL,
    number          INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('closed','signed','sent','acknowledged','rejected')),
    sheet_count     INTEGER NOT NULL,
    signed_der      BLOB,
    closed_at       TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (practitioner_id, number)
);
CREATE INDEX lots_state ON lots (state);
CREATE TABLE sheets (
    id              INTEGER PRIMARY KEY,
    practitioner_id TEXT NOT NULL,
    number          INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('accepted','in_lot','signed','sent','acknowledged','rejected')),
    lot_id          TEXT REFERENCES lots (id),
    der             BLOB NOT NULL,
    json            TEXT NOT NULL,
    reason          TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (practitioner_id, number)
);
CREATE INDEX sheets_state ON sheets (state, id);
CREATE INDEX sheets_lot ON sheets (lot_id);
CREATE TABLE acks (
    id          INTEGER PRIMARY KEY,
    lot_id      TEXT NOT NULL REFERENCES lots (id),
    status      TEXT NOT NULL,
    der         BLOB NOT NULL,
    received_at TEXT NOT NULL,
    rejections  TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL
);
"#,
    // 2: an explicit lot order (the implicit rowid of a TEXT-keyed table may
    // change on VACUUM), at most one ARL per lot, ARL status checked.
    r#"
ALTER TABLE lots ADD COLUMN seq INTEGER;
UPDATE lots SET seq = rowid;
CREATE UNIQUE INDEX lots_seq ON lots (seq);
DROP INDEX lots_state;
CREATE INDEX lots_state ON lots (state, seq);
CREATE UNIQUE INDEX acks_lot ON acks (lot_id);
CREATE TRIGGER acks_status BEFORE INSERT ON acks
    WHEN NEW.status NOT IN ('positive','negative')
    BEGIN SELECT RAISE(ABORT, 'acks.status must be positive or negative'); END;
"#,
    // 3: the participation forfaitaire each sheet withholds, per beneficiary and
    // date of care (its day and year caps need the history), and the DRE a
    // sheet carries for its AMC.
    r#"
CREATE TABLE participation (
    beneficiary TEXT NOT NULL,
    care_date   TEXT NOT NULL CHECK (length(care_date) = 8),
    cents       INTEGER NOT NULL CHECK (cents > 0),
    sheet_id    INTEGER NOT NULL REFERENCES sheets (id)
);
CREATE INDEX participation_beneficiary ON participation (beneficiary, care_date);
ALTER TABLE sheets ADD COLUMN dre BLOB;
"#,
    // 4: the lot's signature also as CMS SignedData (RFC 5652, Ed25519 per RFC 8419).
    r#"
ALTER TABLE lots ADD COLUMN cms BLOB;
"#,
    // 5: each sheet's sending deadline as a column, for the alarms and early closing.
    r#"
ALTER TABLE sheets ADD COLUMN deadline TEXT;
UPDATE sheets SET deadline = json_extract(json, '$.deadline') WHERE json_valid(json);
CREATE INDEX sheets_deadline ON sheets (deadline) WHERE deadline IS NOT NULL;
"#,
    // 6: the participation of purged sheets, kept for the caps of their year.
    r#"
CREATE TABLE participation_kept (
    beneficiary TEXT NOT NULL,
    care_date   TEXT NOT NULL,
    cents       INTEGER NOT NULL CHECK (cents > 0)
);
CREATE INDEX participation_kept_beneficiary ON participation_kept (beneficiary, care_date);
"#,
    // 7: sheets may be cancelled (before they are in a lot), and paid or refused once the
    // insurer's payment returns come: the state CHECK is rebuilt with the table (SQLite
    // cannot alter a CHECK); `migrate` checks the foreign keys before it commits.
    r#"
CREATE TABLE sheets_new (
    id              INTEGER PRIMARY KEY,
    practitioner_id TEXT NOT NULL,
    number          INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    state           TEXT NOT NULL CHECK (state IN ('accepted','in_lot','signed','sent','acknowledged','rejected','paid','refused','cancelled')),
    lot_id          TEXT REFERENCES lots (id),
    der             BLOB NOT NULL,
    json            TEXT NOT NULL,
    reason          TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    dre             BLOB,
    deadline        TEXT,
    UNIQUE (practitioner_id, number)
);
INSERT INTO sheets_new (id, practitioner_id, number, destination, idempotency_key, state, lot_id, der, json, reason, created_at, updated_at, dre, deadline)
    SELECT id, practitioner_id, number, destination, idempotency_key, state, lot_id, der, json, reason, created_at, updated_at, dre, deadline FROM sheets;
DROP TABLE sheets;
ALTER TABLE sheets_new RENAME TO sheets;
CREATE INDEX sheets_state ON sheets (state, id);
CREATE INDEX sheets_lot ON sheets (lot_id);
CREATE INDEX sheets_deadline ON sheets (deadline) WHERE deadline IS NOT NULL;
"#,
    // 8: payment returns, one row per sheet paid or refused by its insurer.
    r#"
CREATE TABLE payments (
    sheet_id     INTEGER PRIMARY KEY REFERENCES sheets (id),
    lot_id       TEXT NOT NULL,
    number       INTEGER NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('paid','refused')),
    amount_cents INTEGER NOT NULL,
    code         TEXT,
    reason       TEXT,
    insurer      TEXT NOT NULL,
    issued_at    TEXT NOT NULL,
    recorded_at  TEXT NOT NULL
);
CREATE INDEX payments_lot ON payments (lot_id);
"#,
    // 9: DRE lots, one per signed lot and AMC paid directly, made when the lot is signed.
    r#"
CREATE TABLE dre_lots (
    lot_id      TEXT NOT NULL REFERENCES lots (id),
    amc         TEXT NOT NULL,
    der         BLOB NOT NULL,
    dres        INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('signed','sent')),
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (lot_id, amc)
);
CREATE INDEX dre_lots_state ON dre_lots (state);
"#,
    // 10: a sheet's body (DER, JSON, DRE) in a table of its own: a sheet changes state four
    // or five times and each change rewrote the whole row, bodies included; now it rewrites a
    // row of some hundred bytes, and the bodies are written once.
    r#"
CREATE TABLE sheet_bodies (
    sheet_id INTEGER PRIMARY KEY REFERENCES sheets (id),
    der      BLOB NOT NULL,
    json     TEXT NOT NULL,
    dre      BLOB
);
INSERT INTO sheet_bodies (sheet_id, der, json, dre) SELECT id, der, json, dre FROM sheets;
ALTER TABLE sheets DROP COLUMN der;
ALTER TABLE sheets DROP COLUMN json;
ALTER TABLE sheets DROP COLUMN dre;
"#,
    // 11: an index entry only where a query looks. A sheet's state changes four times once in
    // a lot and (state, id) moved its entry each time; only the open sheets ('accepted') are
    // looked up by state. A sheet waits for its lot with no lot id, which no query looks up.
    r#"
DROP INDEX sheets_state;
CREATE INDEX sheets_accepted ON sheets (id) WHERE state = 'accepted';
DROP INDEX sheets_lot;
CREATE INDEX sheets_lot ON sheets (lot_id) WHERE lot_id IS NOT NULL;
"#,
    // 12: the sheet states checked by comparisons. SQLite checks `state IN (nine constants)`
    // by building a temporary table at every insert, which cost a quarter of a sheet's
    // insert; the rule is the same.
    r#"
CREATE TABLE sheets_new (
    id              INTEGER PRIMARY KEY,
    practitioner_id TEXT NOT NULL,
    number          INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    state           TEXT NOT NULL CHECK (state = 'accepted' OR state = 'in_lot' OR state = 'signed'
                        OR state = 'sent' OR state = 'acknowledged' OR state = 'rejected'
                        OR state = 'paid' OR state = 'refused' OR state = 'cancelled'),
    lot_id          TEXT REFERENCES lots (id),
    reason          TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    deadline        TEXT,
    UNIQUE (practitioner_id, number)
);
INSERT INTO sheets_new (id, practitioner_id, number, destination, idempotency_key, state, lot_id, reason, created_at, updated_at, deadline)
    SELECT id, practitioner_id, number, destination, idempotency_key, state, lot_id, reason, created_at, updated_at, deadline FROM sheets;
DROP TABLE sheets;
ALTER TABLE sheets_new RENAME TO sheets;
CREATE INDEX sheets_deadline ON sheets (deadline) WHERE deadline IS NOT NULL;
CREATE INDEX sheets_accepted ON sheets (id) WHERE state = 'accepted';
CREATE INDEX sheets_lot ON sheets (lot_id) WHERE lot_id IS NOT NULL;
"#,
    // 13: a sheet's JSON is no longer stored: it is rendered from its DER when read (the DER
    // decodes to the very sheet it was encoded from). It was two thirds of a body's bytes,
    // written to the WAL, then again to the file.
    r#"
ALTER TABLE sheet_bodies DROP COLUMN json;
"#,
    // 14: the participation's day cap is per professional, and an idempotency key belongs to
    // one practitioner and one request.
    // - Each participation row names its professional (the practitioner of its sheet, the CPS
    //   holder) and counts its participations (`acts`). Rows from before: the professional is
    //   the practitioner of their sheet (every `participation` row's sheet exists); the kept
    //   rows of purged sheets have none (NULL: unknown, counted against every professional's
    //   day); the count is unknown (NULL: taken as a full day). Both err towards withholding
    //   less, never more.
    // - The key is unique per practitioner, and each keyed sheet keeps the SHA-256 of its
    //   request (`request_hash`; NULL for the sheets of before, whose retries are answered as
    //   before). The key's UNIQUE was a column constraint: the table is rebuilt (as in 12)
    //   without it, and the index (key, practitioner) holds only the keyed sheets.
    r#"
ALTER TABLE participation ADD COLUMN professional TEXT;
ALTER TABLE participation ADD COLUMN acts INTEGER CHECK (acts > 0);
UPDATE participation SET professional = (SELECT practitioner_id FROM sheets WHERE sheets.id = participation.sheet_id);
ALTER TABLE participation_kept ADD COLUMN professional TEXT;
ALTER TABLE participation_kept ADD COLUMN acts INTEGER CHECK (acts > 0);
CREATE TABLE sheets_new (
    id              INTEGER PRIMARY KEY,
    practitioner_id TEXT NOT NULL,
    number          INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    idempotency_key TEXT,
    request_hash    BLOB CHECK (request_hash IS NULL OR length(request_hash) = 32),
    state           TEXT NOT NULL CHECK (state = 'accepted' OR state = 'in_lot' OR state = 'signed'
                        OR state = 'sent' OR state = 'acknowledged' OR state = 'rejected'
                        OR state = 'paid' OR state = 'refused' OR state = 'cancelled'),
    lot_id          TEXT REFERENCES lots (id),
    reason          TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    deadline        TEXT,
    UNIQUE (practitioner_id, number)
);
INSERT INTO sheets_new (id, practitioner_id, number, destination, idempotency_key, state, lot_id, reason, created_at, updated_at, deadline)
    SELECT id, practitioner_id, number, destination, idempotency_key, state, lot_id, reason, created_at, updated_at, deadline FROM sheets;
DROP TABLE sheets;
ALTER TABLE sheets_new RENAME TO sheets;
CREATE UNIQUE INDEX sheets_idempotency ON sheets (idempotency_key, practitioner_id)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX sheets_deadline ON sheets (deadline) WHERE deadline IS NOT NULL;
CREATE INDEX sheets_accepted ON sheets (id) WHERE state = 'accepted';
CREATE INDEX sheets_lot ON sheets (lot_id) WHERE lot_id IS NOT NULL;
"#,
    // 15: a checksum with each stored body (a sheet's DER and DRE, a signed lot and its CMS, a
    // DRE lot), SHA-256 over the row's identity and its bytes, checked on every read that
    // serves the body: a damaged row is reported by its id, never served. The rows already
    // stored get theirs here (functions of `crate::checksum`).
    r#"
ALTER TABLE sheet_bodies ADD COLUMN checksum BLOB;
ALTER TABLE lots ADD COLUMN checksum BLOB;
ALTER TABLE dre_lots ADD COLUMN checksum BLOB;
UPDATE sheet_bodies SET checksum = fsed_sheet_checksum(sheet_id, der, dre);
UPDATE lots SET checksum = fsed_lot_checksum(id, signed_der, cms)
    WHERE signed_der IS NOT NULL OR cms IS NOT NULL;
UPDATE dre_lots SET checksum = fsed_dre_lot_checksum(lot_id, amc, der);
"#,
    // 16: a lot sent whose ARL never comes (lost on the way back) is sent again by itself:
    // when it was last sent (`sent_at`, the time a resend is counted from, also across a
    // restart) and how many times it was sent again (`resends`). The lots already sent count
    // from their last change, which was their sending.
    r#"
ALTER TABLE lots ADD COLUMN sent_at TEXT;
ALTER TABLE lots ADD COLUMN resends INTEGER NOT NULL DEFAULT 0 CHECK (resends >= 0);
UPDATE lots SET sent_at = updated_at WHERE state = 'sent';
"#,
    // 17: returns (ARLs, payment returns) refused and dead-lettered, counted per reason, so the
    // counts survive a restart (queue.stats, doctor).
    r#"
CREATE TABLE return_dead_letters (
    reason   TEXT PRIMARY KEY,
    count    INTEGER NOT NULL CHECK (count >= 0),
    last_at  TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // 18: supporting documents (SCOR): a document attached to a sheet, its bytes and checksum,
    // and where it stands: stored → referenced (its hash in a signed lot's header) → sent (in
    // an attachment lot) → acknowledged | rejected (that lot's ARL); an attachment lot without
    // its ARL is sent again (`resends`). The same bytes attached twice to a sheet are one row.
    r#"
CREATE TABLE attachments (
    id                INTEGER PRIMARY KEY,
    sheet_id          INTEGER NOT NULL REFERENCES sheets (id),
    kind              TEXT NOT NULL CHECK (kind IN ('prescription','degraded_paper','other')),
    media_type        TEXT NOT NULL,
    size              INTEGER NOT NULL CHECK (size > 0),
    sha256            BLOB NOT NULL,
    content           BLOB NOT NULL,
    checksum          BLOB NOT NULL,
    state             TEXT NOT NULL CHECK (state IN ('stored','referenced','sent','acknowledged','rejected')),
    signed_lot_id     TEXT,
    attachment_lot_id TEXT,
    lot_digest        BLOB,
    resends           INTEGER NOT NULL DEFAULT 0 CHECK (resends >= 0),
    reason            TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (sheet_id, sha256)
);
CREATE INDEX attachments_open ON attachments (state) WHERE state IN ('stored','referenced','sent');
CREATE INDEX attachments_lot ON attachments (attachment_lot_id) WHERE attachment_lot_id IS NOT NULL;
"#,
    // 19: the Vitale app's presence tokens already used (SHA-256 of the token body's DER, hex):
    // a token is accepted once, a restart included. (`IF NOT EXISTS`: a test replays the
    // migrations after an older version on a file that keeps this table.)
    r#"
CREATE TABLE IF NOT EXISTS app_tokens_used (
    digest          TEXT PRIMARY KEY,
    practitioner_id TEXT NOT NULL,
    used_at         TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // 20: the rights cache (rights online): per beneficiary (NIR, birth date, rank) the last
    // rights fsed used, read from the card ('card': the card's rights as an unsigned
    // RightsAnswer DER) or answered by the insurer ('online': the SignedReturn DER as it came),
    // when they were read or fetched, and a checksum over the key and the body.
    r#"
CREATE TABLE rights_cache (
    nir         TEXT NOT NULL,
    birth_date  TEXT NOT NULL,
    rank        INTEGER NOT NULL CHECK (rank BETWEEN 1 AND 255),
    source      TEXT NOT NULL CHECK (source IN ('card', 'online')),
    body        BLOB NOT NULL,
    fetched_at  TEXT NOT NULL,
    checksum    BLOB NOT NULL,
    PRIMARY KEY (nir, birth_date, rank)
) WITHOUT ROWID;
"#,
];

/// The schema version this build writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Applies, in order, the migrations the file has not had yet. The version
/// is read again inside each write transaction, so two processes opening the
/// same new file do not both apply a migration.
///
/// Foreign keys are off while migrating (a table rebuilt under them would break its
/// children's references) and `PRAGMA foreign_key_check` must find nothing before each
/// migration commits; they are back on when this returns.
pub fn migrate(conn: &mut Connection) -> Result<(), QueueError> {
    crate::checksum::register_functions(conn)?;
    conn.pragma_update(None, "foreign_keys", false)?;
    let result = migrate_all(conn);
    conn.pragma_update(None, "foreign_keys", true)?;
    result
}

fn migrate_all(conn: &mut Connection) -> Result<(), QueueError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let done = usize::try_from(version)
            .map_err(|_| QueueError::Data(format!("negative schema version {version}")))?;
        let Some(sql) = MIGRATIONS.get(done) else {
            if done > MIGRATIONS.len() {
                return Err(QueueError::Data(format!(
                    "schema version {version} is newer than this fsed ({})",
                    MIGRATIONS.len()
                )));
            }
            return Ok(());
        };
        tx.execute_batch(sql)?;
        let broken: i64 =
            tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })?;
        if broken != 0 {
            return Err(QueueError::Data(format!(
                "migration {} would leave {broken} broken references; nothing was changed",
                version + 1
            )));
        }
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
}
