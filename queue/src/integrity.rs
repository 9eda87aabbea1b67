//! What keeps a damaged row from being served: a checksum stored with each sheet body, signed
//! lot and DRE lot (SHA-256 over the row's identity and its body bytes, so a body moved to
//! another row is caught too), checked on every read that serves a body, and the full pass
//! of [`crate::Queue::verify`] (checksums, each lot's signature and Merkle root against the
//! sheets stored for it).

use rusqlite::Connection;

pub use crate::checksum::{attachment_checksum, dre_lot_checksum, lot_checksum, sheet_checksum};
pub(crate) use crate::checksum::{check, damage_reason, is_damage, mismatch_error};

/// A stored row fsed will not serve: its checksum does not match its bytes, or a column no
/// longer decodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedRow {
    /// What the row holds: `sheet`, `lot` or `dre_lot`.
    pub kind: &'static str,
    /// Its id: the sheet's store id, the lot id, or `{lot id}/{AMC}` for a DRE lot.
    pub id: String,
    /// Why: `checksum mismatch`, `checksum missing`, or the column that does not decode.
    pub reason: String,
}

/// What [`crate::Queue::verify`] looked at and what it found damaged.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Sheets whose checksum (and DER) were checked.
    pub sheets: u64,
    /// Lots checked (checksum; for a signed lot also its signature, its Merkle root and its
    /// sheets against the stored ones).
    pub lots: u64,
    /// DRE lots checked (checksum, signature, audit paths).
    pub dre_lots: u64,
    /// Every damaged row found, sheets first, then lots, then DRE lots.
    pub damaged: Vec<DamagedRow>,
}

/// Sheets read per step of [`crate::Queue::verify`].
const VERIFY_PAGE: usize = 500;

impl crate::Queue {
    /// Checks every stored row: each sheet's checksum and DER; each lot's checksum and, once
    /// signed, its signature (by the key its header names, which must be the key of the CPS
    /// certificate it carries), its Merkle root recomputed from its entries, each entry's
    /// sheet against the sheet stored for it; each DRE lot's checksum, signature and audit
    /// paths. Reads only; what is damaged is named by id in the report.
    pub fn verify(&self) -> Result<VerifyReport, crate::QueueError> {
        let mut report = VerifyReport::default();
        let mut after = crate::SheetId(0);
        loop {
            let page = self.list_sheets_checked(None, VERIFY_PAGE, after)?;
            let Some(last) = page.last() else { break };
            after = match last {
                Ok(row) => row.id,
                Err(d) => crate::SheetId(d.id.parse().unwrap_or(i64::MAX)),
            };
            report.sheets += page.len() as u64;
            report
                .damaged
                .extend(page.into_iter().filter_map(Result::err));
        }
        let lot_ids: Vec<crate::LotId> = {
            let mut stmt = self.conn.prepare("SELECT id FROM lots ORDER BY seq")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for id in lot_ids {
            report.lots += 1;
            if let Some(reason) = self.lot_damage(&id)? {
                report.damaged.push(DamagedRow {
                    kind: "lot",
                    id: id.into_string(),
                    reason,
                });
            }
        }
        let dre_lots: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT lot_id, amc FROM dre_lots ORDER BY lot_id, amc")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let now = chrono::Utc::now().timestamp();
        for (lot_id, amc) in dre_lots {
            report.dre_lots += 1;
            if let Some(reason) = self.dre_lot_damage(&lot_id, &amc, now)? {
                report.damaged.push(DamagedRow {
                    kind: "dre_lot",
                    id: format!("{lot_id}/{amc}"),
                    reason,
                });
            }
        }
        Ok(report)
    }

    /// Why lot `id` is damaged, or `None` when it is sound.
    fn lot_damage(&self, id: &crate::LotId) -> Result<Option<String>, crate::QueueError> {
        let lot = match self.get_lot(id) {
            Ok(Some(lot)) => lot,
            Ok(None) => return Ok(None),
            Err(crate::QueueError::Damaged(d)) => return Ok(Some(d.reason)),
            Err(e) => return Err(e),
        };
        let Some(der) = lot.signed_der else {
            return Ok(None);
        };
        let signed = match fse_formats::lot::SignedLot::from_der(&der) {
            Ok(s) => s,
            Err(e) => return Ok(Some(format!("signed lot does not decode: {e}"))),
        };
        if signed.header.lot_id != id.as_str() {
            return Ok(Some(format!(
                "signed lot names lot {:?}",
                signed.header.lot_id
            )));
        }
        if let Some(cert) = &signed.signer_certificate {
            // The certificate's key must be the key that signed; its chain and dates are
            // the insurer's to judge (they may have passed since the lot was signed).
            let check =
                fse_formats::pki::TrustStore::new().check(cert, &signed.header.signer_key, 0);
            if matches!(check.status, fse_formats::pki::CertStatus::KeyMismatch) {
                return Ok(Some(
                    "signer certificate's key is not the signing key".into(),
                ));
            }
            if check
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("does not parse"))
            {
                return Ok(Some("signer certificate does not parse".into()));
            }
        }
        if let Err(e) = signed.verify() {
            return Ok(Some(format!("signed lot does not verify: {e}")));
        }
        let stored = self.lot_bodies(id);
        let stored = match stored {
            Ok(s) => s,
            Err(crate::QueueError::Damaged(d)) => {
                return Ok(Some(format!("its sheet {} is damaged", d.id)));
            }
            Err(e) => return Err(e),
        };
        // Each sheet stored in this lot is one of its entries (a sheet rejected with its lot
        // and sent again has moved to a later lot; a purged lot's sheets are gone with it).
        let ids = self.lot_sheet_ids(id)?;
        for ((der, _), sheet_id) in stored.iter().zip(ids) {
            if !signed.entries.iter().any(|e| &e.sheet == der) {
                return Ok(Some(format!(
                    "stored sheet {sheet_id} is not in the signed lot"
                )));
            }
        }
        Ok(None)
    }

    /// Why DRE lot (`lot_id`, `amc`) is damaged, or `None` when it is sound.
    fn dre_lot_damage(
        &self,
        lot_id: &str,
        amc: &str,
        now: i64,
    ) -> Result<Option<String>, crate::QueueError> {
        let row: Option<(Vec<u8>, Option<Vec<u8>>)> = match self
            .conn
            .query_row(
                "SELECT der, checksum FROM dre_lots WHERE lot_id = ?1 AND amc = ?2",
                [lot_id, amc],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map(Some)
        {
            Ok(row) => row,
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(e) if is_damage(&e) => return Ok(Some(damage_reason(&e))),
            Err(e) => return Err(e.into()),
        };
        let Some((der, stored)) = row else {
            return Ok(None);
        };
        if let Err(m) = check(stored.as_deref(), &dre_lot_checksum(lot_id, amc, &der)) {
            return Ok(Some(m.to_string()));
        }
        let lot = match fse_formats::dre_lot::DreLot::from_der(&der) {
            Ok(l) => l,
            Err(e) => return Ok(Some(format!("DRE lot does not decode: {e}"))),
        };
        if let Err(e) = lot.verify(None, now) {
            return Ok(Some(format!("DRE lot does not verify: {e}")));
        }
        Ok(None)
    }
}

/// `file:` URI of `path`, read as immutable (no lock, no WAL index): `%`, `?` and `#`
/// escaped.
fn immutable_uri(path: &std::path::Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// What [`check_file`] found in a sound database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// Its schema version.
    pub version: i64,
    /// The version this build writes: the file is migrated to it at the next start.
    pub latest: i64,
}

/// Opens the database at `path` read-only, leaving nothing beside it: through its WAL when
/// one is there (fsed runs, or stopped without copying it back), else as immutable — a
/// read-only connection in WAL mode would leave a WAL and its index next to the file, owned by
/// whoever looked (root, say), which fsed's own user might then not open.
pub(crate) fn open_read_only(path: &std::path::Path) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if std::path::Path::new(&wal).exists() {
        Connection::open_with_flags(path, flags)
    } else {
        Connection::open_with_flags(immutable_uri(path), flags | OpenFlags::SQLITE_OPEN_URI)
    }
}

/// Checks the database at `path` without changing it and without creating it: opened
/// read-only (`SQLITE_OPEN_READ_ONLY`; as immutable when no WAL is beside it, so that it leaves
/// none), `PRAGMA quick_check`, fsed's application id and a
/// schema version this build knows. [`crate::QueueError::Open`] when it cannot be opened
/// (absent, permissions), [`crate::QueueError::Corrupt`] or
/// [`crate::QueueError::SchemaTooNew`] as [`crate::Queue::open`] says them.
pub fn check_file(path: &std::path::Path) -> Result<FileCheck, crate::QueueError> {
    let open_error = |e: rusqlite::Error| crate::QueueError::Open {
        path: path.to_path_buf(),
        detail: e.into(),
    };
    let corrupt = |e: rusqlite::Error| crate::QueueError::Corrupt {
        path: path.to_path_buf(),
        detail: e.into(),
    };
    if !path.exists() {
        return Err(crate::QueueError::Open {
            path: path.to_path_buf(),
            detail: "no such file".into(),
        });
    }
    let conn = open_read_only(path).map_err(open_error)?;
    conn.busy_timeout(crate::BUSY_TIMEOUT).map_err(open_error)?;
    let found: Vec<String> = {
        let mut stmt = conn.prepare("PRAGMA quick_check").map_err(corrupt)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(corrupt)?;
        rows.collect::<Result<_, _>>().map_err(corrupt)?
    };
    if found != ["ok"] {
        return Err(crate::QueueError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("quick_check: {}", found.join("; ")).into(),
        });
    }
    let pragma = |name: &str| {
        conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0))
            .map_err(corrupt)
    };
    let (application_id, version) = (pragma("application_id")?, pragma("user_version")?);
    let latest = crate::schema::latest_version();
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('sheets', 'lots', 'events')",
            [],
            |r| r.get(0),
        )
        .map_err(corrupt)?;
    // Schema 1 files were written before the application id was set.
    if application_id != i64::from(crate::schema::APPLICATION_ID)
        && !(application_id == 0 && version >= 1 && tables == 3)
    {
        return Err(crate::QueueError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "not an fsed database (application_id {application_id}, user_version {version})"
            )
            .into(),
        });
    }
    if version > latest {
        return Err(crate::QueueError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            supported: latest,
        });
    }
    Ok(FileCheck { version, latest })
}
