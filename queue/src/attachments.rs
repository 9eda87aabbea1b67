//! Supporting documents (SCOR): stored with their sheet, referenced by their hash in the
//! header of a signed lot (in the transaction that stores the lot signed), sent in an
//! attachment lot once that lot is sent, acknowledged or rejected by its ARL.
//!
//! An attachment lot is made of the documents one signed lot references: its id is
//! `<practitioner>-A<number of that lot, 8 digits>`, so a resend has the same id and bytes.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use crate::events::{event, stamp};
use crate::rows::get_u64;
use crate::{integrity, LotId, PractitionerId, Queue, QueueError, SheetId, Stamp};

/// A document to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttachment {
    /// Its sheet.
    pub sheet_id: SheetId,
    /// `prescription`, `degraded_paper` or `other`.
    pub kind: String,
    /// Its media type, found from its bytes.
    pub media_type: String,
    /// SHA-256 of `content`.
    pub sha256: [u8; 32],
    /// Its bytes.
    pub content: Vec<u8>,
}

/// A stored document, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    /// Store id.
    pub id: i64,
    /// Its sheet.
    pub sheet_id: SheetId,
    /// Its sheet's number.
    pub sheet_number: u64,
    /// Its sheet's practitioner.
    pub practitioner_id: PractitionerId,
    /// Its sheet's destination.
    pub destination: String,
    /// `prescription`, `degraded_paper` or `other`.
    pub kind: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes.
    pub sha256: [u8; 32],
    /// `stored`, `referenced`, `sent`, `acknowledged` or `rejected`.
    pub state: String,
    /// The signed lot whose header references it.
    pub signed_lot_id: Option<LotId>,
    /// The attachment lot that carried it.
    pub attachment_lot_id: Option<String>,
    /// Why the insurer refused it.
    pub reason: Option<String>,
    /// When it was stored.
    pub created_at: Stamp,
}

/// A stored document with its bytes (checksum checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    /// The row.
    pub row: AttachmentRow,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// The documents one sent lot references, to be sent as one attachment lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentLotToSend {
    /// `<practitioner>-A<lot number, 8 digits>`.
    pub lot_id: String,
    /// The signed lot whose header references them.
    pub signed_lot_id: LotId,
    /// Its practitioner.
    pub practitioner_id: PractitionerId,
    /// Its destination.
    pub destination: String,
    /// The documents, by id.
    pub attachments: Vec<StoredAttachment>,
}

/// What an attachment lot's ARL did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachmentArl {
    /// Applied: this many documents acknowledged or rejected.
    Applied(usize),
    /// Already applied (a duplicate ARL): nothing changed.
    Duplicate,
    /// No attachment lot of that id was sent.
    Unknown,
    /// The ARL names other content (its digest differs from the lot sent).
    Mismatch,
    /// Signed by another insurer than the lot's destination (the destination is given).
    WrongInsurer(String),
}

const COLUMNS: &str = "a.id, a.sheet_id, s.number, s.practitioner_id, s.destination, a.kind, \
     a.media_type, a.size, a.sha256, a.state, a.signed_lot_id, a.attachment_lot_id, a.reason, \
     a.created_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttachmentRow> {
    let sha: Vec<u8> = r.get(8)?;
    Ok(AttachmentRow {
        id: r.get(0)?,
        sheet_id: r.get(1)?,
        sheet_number: get_u64(r, 2)?,
        practitioner_id: r.get(3)?,
        destination: r.get(4)?,
        kind: r.get(5)?,
        media_type: r.get(6)?,
        size: get_u64(r, 7)?,
        sha256: sha.try_into().map_err(|_| {
            integrity::mismatch_error(8, crate::checksum::Mismatch("sha256 not 32 bytes"))
        })?,
        state: r.get(9)?,
        signed_lot_id: r.get(10)?,
        attachment_lot_id: r.get(11)?,
        reason: r.get(12)?,
        created_at: r.get(13)?,
    })
}

/// A row and its bytes, the checksum checked (columns: [`COLUMNS`], content, checksum).
fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAttachment> {
    let row = row(r)?;
    let content: Vec<u8> = r.get(14)?;
    let sum: Option<Vec<u8>> = r.get(15)?;
    integrity::check(
        sum.as_deref(),
        &integrity::attachment_checksum(
            row.id,
            row.sheet_id.get(),
            &row.kind,
            &row.media_type,
            &content,
        ),
    )
    .map_err(|m| integrity::mismatch_error(15, m))?;
    Ok(StoredAttachment { row, content })
}

/// Marks `referenced` the stored documents the header of `signed_der` (lot `lot_id`)
/// references, within the transaction that stores the lot signed.
pub(crate) fn reference_in(
    tx: &Connection,
    lot_id: &str,
    signed_der: &[u8],
    at: &str,
) -> Result<(), QueueError> {
    let any: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM attachments WHERE state = 'stored')",
        [],
        |r| r.get(0),
    )?;
    if !any {
        return Ok(());
    }
    let lot = fse_formats::lot::SignedLot::from_der(signed_der)
        .map_err(|e| QueueError::Data(format!("lot {lot_id}: {e}")))?;
    let header = &lot.header;
    for r in &header.attachments {
        tx.execute(
            "UPDATE attachments SET state = 'referenced', signed_lot_id = ?1, updated_at = ?2 \
             WHERE state = 'stored' AND sha256 = ?3 AND sheet_id = \
             (SELECT id FROM sheets WHERE practitioner_id = ?4 AND number = ?5)",
            params![
                lot_id,
                at,
                r.sha256.as_slice(),
                header.practitioner_id,
                i64::try_from(r.sheet_number).unwrap_or(i64::MAX)
            ],
        )?;
    }
    if !header.attachments.is_empty() {
        event(
            tx,
            at,
            "attachments.referenced",
            lot_id,
            json!({ "attachments": header.attachments.len() }),
        )?;
    }
    Ok(())
}

impl Queue {
    /// Stores a document for its sheet; the same bytes for the same sheet are the row already
    /// stored (`false`: nothing was written). Committed before it returns.
    pub fn insert_attachment(
        &mut self,
        new: &NewAttachment,
    ) -> Result<(AttachmentRow, bool), QueueError> {
        let tx = self.write()?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM attachments WHERE sheet_id = ?1 AND sha256 = ?2",
                params![new.sheet_id, new.sha256.as_slice()],
                |r| r.get(0),
            )
            .optional()?;
        let (id, fresh) = match existing {
            Some(id) => (id, false),
            None => {
                let at = stamp();
                let id: i64 = tx.query_row(
                    "SELECT coalesce(max(id), 0) + 1 FROM attachments",
                    [],
                    |r| r.get(0),
                )?;
                let sum = integrity::attachment_checksum(
                    id,
                    new.sheet_id.get(),
                    &new.kind,
                    &new.media_type,
                    &new.content,
                );
                tx.execute(
                    "INSERT INTO attachments (id, sheet_id, kind, media_type, size, sha256, content, \
                     checksum, state, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'stored', ?9, ?9)",
                    params![
                        id,
                        new.sheet_id,
                        new.kind,
                        new.media_type,
                        new.content.len() as i64,
                        new.sha256.as_slice(),
                        new.content,
                        sum.as_slice(),
                        at
                    ],
                )?;
                event(
                    &tx,
                    &at,
                    "attachment.stored",
                    &new.sheet_id.to_string(),
                    json!({ "attachment": id, "kind": new.kind, "size": new.content.len() }),
                )?;
                (id, true)
            }
        };
        let row = tx.query_row(
            &format!(
                "SELECT {COLUMNS} FROM attachments a JOIN sheets s ON s.id = a.sheet_id WHERE a.id = ?1"
            ),
            [id],
            row,
        )?;
        tx.commit()?;
        Ok((row, fresh))
    }

    /// The documents of a sheet, oldest first.
    pub fn sheet_attachments(&self, sheet_id: SheetId) -> Result<Vec<AttachmentRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments a JOIN sheets s ON s.id = a.sheet_id \
             WHERE a.sheet_id = ?1 ORDER BY a.id"
        ))?;
        let rows = stmt.query_map([sheet_id], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many documents each sheet with an id in `first ..= last` has (sheets without any
    /// are not named).
    pub fn attachment_counts(
        &self,
        first: SheetId,
        last: SheetId,
    ) -> Result<std::collections::HashMap<i64, u64>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sheet_id, count(*) FROM attachments WHERE sheet_id BETWEEN ?1 AND ?2 \
             GROUP BY sheet_id",
        )?;
        let rows = stmt.query_map(params![first, last], |r| Ok((r.get(0)?, get_u64(r, 1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The documents the header of lot `lot_id` is to reference when it is signed: those
    /// stored (not yet referenced) of its practitioner's sheets to its destination whose sheet
    /// is in this lot or in a lot signed already (documents attached after their sheet's lot
    /// was signed go into the next lot), by id.
    pub fn attachments_for_lot(&self, lot_id: &LotId) -> Result<Vec<AttachmentRow>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM attachments a JOIN sheets s ON s.id = a.sheet_id \
             JOIN lots l ON l.id = ?1 \
             WHERE a.state = 'stored' AND s.practitioner_id = l.practitioner_id \
             AND s.destination = l.destination \
             AND (s.lot_id = l.id OR s.state NOT IN ('accepted','in_lot','cancelled')) \
             ORDER BY a.id"
        ))?;
        let rows = stmt.query_map([lot_id], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The attachment lots to send: the documents referenced by lots sent already (or
    /// answered), grouped by lot, their bytes checked.
    pub fn attachment_lots_to_send(&self) -> Result<Vec<AttachmentLotToSend>, QueueError> {
        self.attachment_lots_where(
            "a.state = 'referenced' AND l.state IN ('sent','acknowledged','rejected')",
            params![],
        )
    }

    /// The attachment lots sent whose ARL has not come: last sent at or before `sent_before`,
    /// sent again fewer than `max_resends` times (the same id and bytes: the insurer answers
    /// it again).
    pub fn attachment_lots_to_resend(
        &self,
        sent_before: Stamp,
        max_resends: u32,
    ) -> Result<Vec<AttachmentLotToSend>, QueueError> {
        self.attachment_lots_where(
            "a.state = 'sent' AND a.updated_at <= ?1 AND a.resends < ?2",
            params![sent_before, max_resends],
        )
    }

    /// The documents of `filter` grouped by attachment lot.
    fn attachment_lots_where(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<AttachmentLotToSend>, QueueError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS}, a.content, a.checksum, l.number FROM attachments a \
             JOIN sheets s ON s.id = a.sheet_id JOIN lots l ON l.id = a.signed_lot_id \
             WHERE {filter} ORDER BY l.seq, a.id"
        ))?;
        let rows = stmt.query_map(args, |r| Ok((stored(r)?, get_u64(r, 16)?)))?;
        let mut out: Vec<AttachmentLotToSend> = Vec::new();
        for item in rows {
            let (att, number) = item.map_err(|e| match integrity::is_damage(&e) {
                true => QueueError::Data(format!("attachment: {}", integrity::damage_reason(&e))),
                false => QueueError::from(e),
            })?;
            let signed = att.row.signed_lot_id.clone().ok_or_else(|| {
                QueueError::Data(format!("attachment {} referenced by no lot", att.row.id))
            })?;
            match out.last_mut() {
                Some(l) if l.signed_lot_id == signed => l.attachments.push(att),
                _ => out.push(AttachmentLotToSend {
                    lot_id: format!("{}-A{number:08}", att.row.practitioner_id),
                    signed_lot_id: signed,
                    practitioner_id: att.row.practitioner_id.clone(),
                    destination: att.row.destination.clone(),
                    attachments: vec![att],
                }),
            }
        }
        Ok(out)
    }

    /// An attachment lot without its ARL sent again: counted, its time restarted, with its
    /// event. Returns how many times it was sent again (0: its ARL came meanwhile).
    pub fn mark_attachment_lot_resent(&mut self, lot_id: &str) -> Result<u32, QueueError> {
        let tx = self.write()?;
        let at = stamp();
        let changed = tx.execute(
            "UPDATE attachments SET resends = resends + 1, updated_at = ?2 \
             WHERE attachment_lot_id = ?1 AND state = 'sent'",
            params![lot_id, at],
        )?;
        let resends: u32 = tx.query_row(
            "SELECT coalesce(max(resends), 0) FROM attachments WHERE attachment_lot_id = ?1 \
                 AND state = 'sent'",
            [lot_id],
            |r| r.get(0),
        )?;
        if changed > 0 {
            event(
                &tx,
                &at,
                "attachment_lot.resent",
                lot_id,
                json!({ "attempt": resends }),
            )?;
        }
        tx.commit()?;
        Ok(resends)
    }

    /// An attachment lot confirmed by the broker (or durable in the spool): its documents
    /// `referenced` → `sent`, with the lot's id and digest (SHA-256 of its DER, which its ARL
    /// echoes). Marking it again changes nothing.
    pub fn mark_attachment_lot_sent(
        &mut self,
        lot: &AttachmentLotToSend,
        digest: &[u8; 32],
    ) -> Result<(), QueueError> {
        let tx = self.write()?;
        let at = stamp();
        let mut changed = 0;
        for a in &lot.attachments {
            changed += tx.execute(
                "UPDATE attachments SET state = 'sent', attachment_lot_id = ?2, lot_digest = ?3, \
                 updated_at = ?4 WHERE id = ?1 AND state = 'referenced'",
                params![a.row.id, lot.lot_id, digest.as_slice(), at],
            )?;
        }
        if changed > 0 {
            event(
                &tx,
                &at,
                "attachment_lot.sent",
                &lot.lot_id,
                json!({ "signed_lot_id": lot.signed_lot_id, "attachments": changed }),
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Applies an attachment lot's ARL (idempotent): positive → its documents
    /// `acknowledged`; negative → `rejected`, with `reason` (`CODE: reason; …`).
    pub fn apply_attachment_arl(
        &mut self,
        lot_id: &str,
        insurer: &str,
        digest: &[u8; 32],
        positive: bool,
        reason: Option<&str>,
    ) -> Result<AttachmentArl, QueueError> {
        let tx = self.write()?;
        let found: Vec<(Option<Vec<u8>>, String)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT a.lot_digest, s.destination FROM attachments a \
                 JOIN sheets s ON s.id = a.sheet_id WHERE a.attachment_lot_id = ?1",
            )?;
            let rows = stmt.query_map([lot_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        if found.is_empty() {
            return Ok(AttachmentArl::Unknown);
        }
        if let Some((_, other)) = found.iter().find(|(_, d)| d != insurer) {
            return Ok(AttachmentArl::WrongInsurer(other.clone()));
        }
        if found
            .iter()
            .any(|(d, _)| d.as_deref() != Some(digest.as_slice()))
        {
            return Ok(AttachmentArl::Mismatch);
        }
        let at = stamp();
        let state = if positive { "acknowledged" } else { "rejected" };
        let changed = tx.execute(
            "UPDATE attachments SET state = ?2, reason = ?3, updated_at = ?4 \
             WHERE attachment_lot_id = ?1 AND state = 'sent'",
            params![lot_id, state, reason, at],
        )?;
        if changed == 0 {
            return Ok(AttachmentArl::Duplicate);
        }
        event(
            &tx,
            &at,
            &format!("attachment_lot.{state}"),
            lot_id,
            json!({ "attachments": changed, "reason": reason }),
        )?;
        tx.commit()?;
        Ok(AttachmentArl::Applied(changed))
    }

    /// Sheets created before `created_before` (`YYYYMMDDHHMMSSZ`) without a
    /// `degraded_paper` document, not cancelled: (id, practitioner, number, created_at, DER),
    /// for the caller to keep those made in degraded mode.
    #[allow(clippy::type_complexity)]
    pub fn sheets_without_paper(
        &self,
        created_before: &str,
    ) -> Result<Vec<(SheetId, PractitionerId, u64, String, Vec<u8>)>, QueueError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.id, s.practitioner_id, s.number, s.created_at, b.der FROM sheets s \
             JOIN sheet_bodies b ON b.sheet_id = s.id \
             WHERE s.created_at < ?1 AND s.state != 'cancelled' AND NOT EXISTS \
             (SELECT 1 FROM attachments a WHERE a.sheet_id = s.id AND a.kind = 'degraded_paper') \
             ORDER BY s.id",
        )?;
        let rows = stmt.query_map([created_before], |r| {
            Ok((r.get(0)?, r.get(1)?, get_u64(r, 2)?, r.get(3)?, r.get(4)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
