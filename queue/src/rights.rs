//! The rights cache: the last rights fsed used per beneficiary (NIR, birth date, rank), from
//! the card or answered online, with when they were read or fetched. Each entry's body is
//! served only when its checksum holds.

use rusqlite::{params, OptionalExtension};

use crate::checksum::{check, mismatch_error, rights_checksum};
use crate::rows::row_error;
use crate::{Queue, QueueError, Stamp};

/// Where cached rights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RightsSourceKind {
    /// Read from the Vitale card (body: the card's rights as an unsigned `RightsAnswer` DER).
    Card,
    /// Answered by the insurer (body: the `SignedReturn` DER as it came).
    Online,
}

impl RightsSourceKind {
    /// `card` or `online`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RightsSourceKind::Card => "card",
            RightsSourceKind::Online => "online",
        }
    }

    fn parse(s: &str) -> Option<RightsSourceKind> {
        match s {
            "card" => Some(RightsSourceKind::Card),
            "online" => Some(RightsSourceKind::Online),
            _ => None,
        }
    }
}

/// One rights cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightsEntry {
    /// NIR with its key.
    pub nir: String,
    /// Birth date `YYYYMMDD`.
    pub birth_date: String,
    /// Birth rank.
    pub rank: u8,
    /// Card or online.
    pub source: RightsSourceKind,
    /// The DER kept (see [`RightsSourceKind`]).
    pub body: Vec<u8>,
    /// When the rights were read or fetched.
    pub fetched_at: Stamp,
}

impl Queue {
    /// Keeps `entry` as the beneficiary's cached rights, replacing any before.
    pub fn put_rights(&mut self, entry: &RightsEntry) -> Result<(), QueueError> {
        let sum = rights_checksum(
            &entry.nir,
            &entry.birth_date,
            entry.rank,
            entry.source.as_str(),
            &entry.body,
        );
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO rights_cache (nir, birth_date, rank, source, body, fetched_at, checksum)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (nir, birth_date, rank) DO UPDATE SET source = excluded.source,
               body = excluded.body, fetched_at = excluded.fetched_at,
               checksum = excluded.checksum",
            params![
                entry.nir,
                entry.birth_date,
                entry.rank,
                entry.source.as_str(),
                entry.body,
                entry.fetched_at,
                sum.as_slice()
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The beneficiary's cached rights, if any. [`QueueError::Damaged`] when the entry's
    /// checksum does not hold.
    pub fn get_rights(
        &self,
        nir: &str,
        birth_date: &str,
        rank: u8,
    ) -> Result<Option<RightsEntry>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT source, body, fetched_at, checksum FROM rights_cache
             WHERE nir = ?1 AND birth_date = ?2 AND rank = ?3",
        )?;
        stmt.query_row(params![nir, birth_date, rank], |r| {
            let source: String = r.get(0)?;
            let body: Vec<u8> = r.get(1)?;
            let stored: Option<Vec<u8>> = r.get(3)?;
            let source = RightsSourceKind::parse(&source).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("unknown rights source {source:?}").into(),
                )
            })?;
            let sum = rights_checksum(nir, birth_date, rank, source.as_str(), &body);
            check(stored.as_deref(), &sum).map_err(|m| mismatch_error(3, m))?;
            Ok(RightsEntry {
                nir: nir.to_string(),
                birth_date: birth_date.to_string(),
                rank,
                source,
                body,
                fetched_at: r.get(2)?,
            })
        })
        .optional()
        .map_err(|e| row_error("rights", format!("{birth_date}/{rank}"), e))
    }
}
