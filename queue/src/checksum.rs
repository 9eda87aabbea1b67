//! How a stored body's checksum is made and checked: SHA-256 over the row's identity and its
//! bytes (each part length-prefixed), the error a row reader raises when they disagree, and
//! the SQL functions that let a migration compute the checksums of rows already stored. A
//! leaf: the schema's migrations and [`crate::integrity`] both use it.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Type, ValueRef};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

/// Why a row was refused, carried inside a `rusqlite` conversion error so that row readers
/// keep their `rusqlite::Result` shape.
#[derive(Debug)]
pub(crate) struct Mismatch(pub(crate) &'static str);

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Mismatch {}

fn put_part(h: &mut Sha256, part: Option<&[u8]>) {
    match part {
        // Absent and empty differ; each part is length-prefixed so no two rows meet.
        None => h.update([0u8]),
        Some(bytes) => {
            h.update([1u8]);
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
    }
}

/// The checksum of sheet `id`'s body: its DER and its DRE.
pub fn sheet_checksum(id: i64, der: &[u8], dre: Option<&[u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fsed sheet body\0");
    h.update(id.to_be_bytes());
    put_part(&mut h, Some(der));
    put_part(&mut h, dre);
    h.finalize().into()
}

/// The checksum of lot `id`'s signed DER and CMS.
pub fn lot_checksum(id: &str, signed_der: Option<&[u8]>, cms: Option<&[u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fsed signed lot\0");
    put_part(&mut h, Some(id.as_bytes()));
    put_part(&mut h, signed_der);
    put_part(&mut h, cms);
    h.finalize().into()
}

/// The checksum of lot `lot_id`'s DRE lot for AMC `amc`.
pub fn dre_lot_checksum(lot_id: &str, amc: &str, der: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fsed DRE lot\0");
    put_part(&mut h, Some(lot_id.as_bytes()));
    put_part(&mut h, Some(amc.as_bytes()));
    put_part(&mut h, Some(der));
    h.finalize().into()
}

/// The checksum of attachment `id`: its sheet, kind, media type and bytes.
pub fn attachment_checksum(
    id: i64,
    sheet_id: i64,
    kind: &str,
    media_type: &str,
    content: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fsed attachment\0");
    h.update(id.to_be_bytes());
    h.update(sheet_id.to_be_bytes());
    put_part(&mut h, Some(kind.as_bytes()));
    put_part(&mut h, Some(media_type.as_bytes()));
    put_part(&mut h, Some(content));
    h.finalize().into()
}

/// The checksum of a rights cache entry: its key, source and body.
pub fn rights_checksum(
    nir: &str,
    birth_date: &str,
    rank: u8,
    source: &str,
    body: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"fsed rights\0");
    put_part(&mut h, Some(nir.as_bytes()));
    put_part(&mut h, Some(birth_date.as_bytes()));
    h.update([rank]);
    put_part(&mut h, Some(source.as_bytes()));
    put_part(&mut h, Some(body));
    h.finalize().into()
}

/// Checks a stored checksum against the one computed: `Err` names why they differ.
pub(crate) fn check(stored: Option<&[u8]>, computed: &[u8; 32]) -> Result<(), Mismatch> {
    match stored {
        None => Err(Mismatch("checksum missing")),
        Some(s) if s == computed.as_slice() => Ok(()),
        Some(_) => Err(Mismatch("checksum mismatch")),
    }
}

/// The conversion error a row reader returns for a checksum that does not match column `i`.
pub(crate) fn mismatch_error(i: usize, m: Mismatch) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, Type::Blob, Box::new(m))
}

/// Whether `e` says a row's stored values are damaged (a checksum that does not match, a
/// column of the wrong type, text that is not UTF-8, a body that does not decode) rather
/// than the database failing.
pub(crate) fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    )
}

/// A readable reason for damage `e` (see [`is_damage`]).
pub(crate) fn damage_reason(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, why) => why.to_string(),
        rusqlite::Error::InvalidColumnType(_, name, ty) => {
            format!("column {name} holds a value of type {ty}")
        }
        rusqlite::Error::IntegralValueOutOfRange(i, v) => {
            format!("column {i} holds {v}, out of range")
        }
        rusqlite::Error::Utf8Error(e) => format!("text that is not UTF-8: {e}"),
        other => other.to_string(),
    }
}

fn blob_or_null<'a>(v: ValueRef<'a>, what: &str) -> rusqlite::Result<Option<&'a [u8]>> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) => Ok(Some(b)),
        _ => Err(rusqlite::Error::UserFunctionError(
            format!("{what}: not a blob").into(),
        )),
    }
}

fn text(v: ValueRef<'_>, what: &str) -> rusqlite::Result<String> {
    match v {
        ValueRef::Text(t) => Ok(String::from_utf8_lossy(t).into_owned()),
        _ => Err(rusqlite::Error::UserFunctionError(
            format!("{what}: not text").into(),
        )),
    }
}

/// Registers the checksum functions the migration that adds the checksums uses to fill them
/// for the rows already stored: `fsed_sheet_checksum(sheet_id, der, dre)`,
/// `fsed_lot_checksum(id, signed_der, cms)`, `fsed_dre_lot_checksum(lot_id, amc, der)`.
pub(crate) fn register_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("fsed_sheet_checksum", 3, flags, |ctx| {
        let id: i64 = ctx.get(0)?;
        let der = blob_or_null(ctx.get_raw(1), "der")?.unwrap_or_default();
        let dre = blob_or_null(ctx.get_raw(2), "dre")?;
        Ok(sheet_checksum(id, der, dre).to_vec())
    })?;
    conn.create_scalar_function("fsed_lot_checksum", 3, flags, |ctx| {
        let id = text(ctx.get_raw(0), "id")?;
        let der = blob_or_null(ctx.get_raw(1), "signed_der")?;
        let cms = blob_or_null(ctx.get_raw(2), "cms")?;
        Ok(lot_checksum(&id, der, cms).to_vec())
    })?;
    conn.create_scalar_function("fsed_dre_lot_checksum", 3, flags, |ctx| {
        let lot_id = text(ctx.get_raw(0), "lot_id")?;
        let amc = text(ctx.get_raw(1), "amc")?;
        let der = blob_or_null(ctx.get_raw(2), "der")?.unwrap_or_default();
        Ok(dre_lot_checksum(&lot_id, &amc, der).to_vec())
    })?;
    Ok(())
}
