//! Reading rows: the columns a sheet or lot is read from, their decoding into [`SheetRow`]
//! and [`LotRow`], and the damaged-row errors a read reports.

use std::str::FromStr;

use rusqlite::types::Type;
use rusqlite::Row;

use crate::{integrity, DamagedRow, LotId, LotRow, QueueError, SheetId, SheetRow, UnknownState};

/// Where [`SHEET_COLS`] are read: a sheet and its body (no column name is in both tables).
pub(crate) const SHEETS_WITH_BODIES: &str = "sheets JOIN sheet_bodies ON sheet_id = id";

pub(crate) const SHEET_COLS: &str = "id, practitioner_id, number, destination, state, lot_id, der, reason, created_at, updated_at, dre, checksum";
pub(crate) const LOT_COLS: &str = "id, practitioner_id, number, destination, state, sheet_count, signed_der, closed_at, updated_at, cms, checksum";

pub(crate) fn get_u64(r: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = r.get(i)?;
    u64::try_from(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Integer, Box::new(e)))
}

fn get_state<T: FromStr<Err = UnknownState>>(r: &Row<'_>, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    s.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

pub(crate) fn sheet_row(r: &Row<'_>) -> rusqlite::Result<SheetRow> {
    let id: i64 = r.get(0)?;
    let der: Vec<u8> = r.get(6)?;
    let dre: Option<Vec<u8>> = r.get(10)?;
    let stored: Option<Vec<u8>> = r.get(11)?;
    integrity::check(
        stored.as_deref(),
        &integrity::sheet_checksum(id, &der, dre.as_deref()),
    )
    .map_err(|m| integrity::mismatch_error(11, m))?;
    // The DER is the sheet: one that no longer decodes is a damaged row, never served.
    fse_formats::fse::CareSheet::from_der(&der).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(6, Type::Blob, Box::new(StoredSheet(e)))
    })?;
    Ok(SheetRow {
        id: SheetId(id),
        practitioner_id: r.get(1)?,
        number: get_u64(r, 2)?,
        destination: r.get(3)?,
        state: get_state(r, 4)?,
        lot_id: r.get(5)?,
        der,
        reason: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// A stored sheet's DER that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("stored sheet: {0}")]
struct StoredSheet(#[source] fse_formats::der::DerError);

pub(crate) fn lot_row(r: &Row<'_>) -> rusqlite::Result<LotRow> {
    let id: LotId = r.get(0)?;
    let signed_der: Option<Vec<u8>> = r.get(6)?;
    let cms: Option<Vec<u8>> = r.get(9)?;
    let stored: Option<Vec<u8>> = r.get(10)?;
    // A lot gets its checksum when it is signed; before that it holds no body.
    if signed_der.is_some() || cms.is_some() || stored.is_some() {
        integrity::check(
            stored.as_deref(),
            &integrity::lot_checksum(&id, signed_der.as_deref(), cms.as_deref()),
        )
        .map_err(|m| integrity::mismatch_error(10, m))?;
    }
    Ok(LotRow {
        id,
        practitioner_id: r.get(1)?,
        number: get_u64(r, 2)?,
        destination: r.get(3)?,
        state: get_state(r, 4)?,
        sheet_count: get_u64(r, 5)?,
        signed_der,
        closed_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// `e` as the store's error for row `id` of `kind`: [`QueueError::Damaged`] when the row's
/// values are damaged, else the SQLite error.
pub(crate) fn row_error(kind: &'static str, id: impl ToString, e: rusqlite::Error) -> QueueError {
    if integrity::is_damage(&e) {
        QueueError::Damaged(DamagedRow {
            kind,
            id: id.to_string(),
            reason: integrity::damage_reason(&e),
        })
    } else {
        e.into()
    }
}

/// Reads a row with `read`, or, when its values are damaged, says which row (its id read
/// from column 0 as `I`) and why, so that one damaged row does not fail a whole listing.
pub(crate) fn checked_row<T, I: rusqlite::types::FromSql + ToString>(
    kind: &'static str,
    r: &Row<'_>,
    read: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Result<T, DamagedRow>> {
    match read(r) {
        Ok(row) => Ok(Ok(row)),
        Err(e) if integrity::is_damage(&e) => {
            // The id is the row's key (a rowid for sheets): still readable when the rest
            // is not, or the damage is the SQLite error itself.
            let id: I = r.get(0)?;
            Ok(Err(DamagedRow {
                kind,
                id: id.to_string(),
                reason: integrity::damage_reason(&e),
            }))
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64, QueueError> {
    i64::try_from(v).map_err(|_| QueueError::Data(format!("{what} {v} is too large")))
}

pub(crate) fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
