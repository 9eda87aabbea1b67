//! Supporting documents in the batcher: their references in the header of the lot being
//! signed, the attachment lots sent once their signed lot is sent, and the alarm of a
//! degraded-mode sheet still without its paper.
//!
//! A lot's header references the stored documents of its practitioner's sheets to its
//! destination whose sheet is in this lot or in a lot signed already: a document attached
//! after its sheet's lot was signed goes into the practitioner's next lot to the same
//! destination.

use fse_formats::attachment::{AttachmentEntry, AttachmentKind, AttachmentLot, AttachmentRef};
use fse_queue::{AttachmentLotToSend, LotRow};

use super::Batcher;

/// The least time between two looks for degraded-mode sheets without their paper (a look
/// reads the sheets older than the limit); `lots.close` asks for one at once.
const PAPER_LOOK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// The attachment lot of the documents `lot` holds, and its DER.
fn encode(lot: &AttachmentLotToSend) -> Result<Vec<u8>, String> {
    let entries = lot
        .attachments
        .iter()
        .map(|a| {
            Ok(AttachmentEntry {
                reference: reference(&a.row)?,
                content: a.content.clone(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    AttachmentLot {
        lot_id: lot.lot_id.clone(),
        practitioner_id: lot.practitioner_id.as_str().to_owned(),
        destination: lot.destination.clone(),
        signed_lot_id: lot.signed_lot_id.as_str().to_owned(),
        entries,
    }
    .to_der()
    .map_err(|e| e.to_string())
}

/// The reference a header carries for a stored document.
fn reference(a: &fse_queue::AttachmentRow) -> Result<AttachmentRef, String> {
    Ok(AttachmentRef {
        sheet_number: a.sheet_number,
        kind: AttachmentKind::parse(&a.kind)
            .ok_or_else(|| format!("attachment {}: unknown kind {}", a.id, a.kind))?,
        media_type: a.media_type.clone(),
        size: a.size,
        sha256: a.sha256,
    })
}

impl Batcher {
    /// The references the header of `lot` carries (none: a version 1 header).
    pub(super) async fn header_refs(&self, lot: &LotRow) -> Result<Vec<AttachmentRef>, String> {
        let id = lot.id.clone();
        let rows = self
            .store
            .read(move |q| q.attachments_for_lot(&id))
            .await
            .map_err(|e| e.to_string())?;
        rows.iter().map(reference).collect()
    }

    /// Sends the attachment lots whose signed lot is sent; returns whether one failed (it
    /// stays and goes at a later turn).
    pub(super) async fn send_attachments(&self) -> Result<bool, String> {
        let lots = self
            .store
            .read(|q| q.attachment_lots_to_send())
            .await
            .map_err(|e| e.to_string())?;
        let mut failed = false;
        for lot in lots {
            let der = encode(&lot)?;
            let digest = AttachmentLot::digest(&der);
            let sent = self
                .transport
                .send_attachment_lot(&lot.lot_id, &lot.destination, &der)
                .await;
            if let Err(e) = sent {
                tracing::warn!(lot = %lot.lot_id, error = %e, "attachment lot not sent; it stays queued");
                failed = true;
                continue;
            }
            let (id, signed, n) = (
                lot.lot_id.clone(),
                lot.signed_lot_id.clone(),
                lot.attachments.len(),
            );
            self.store
                .call(move |q| q.mark_attachment_lot_sent(&lot, &digest))
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(lot = %id, signed_lot = %signed, documents = n, "attachment lot sent");
            self.events.publish(
                "attachment_lot.sent",
                serde_json::json!({ "lot_id": id, "signed_lot_id": signed, "attachments": n }),
            );
        }
        Ok(failed || self.resend_attachments().await?)
    }

    /// Sends again, same id and bytes, the attachment lots whose ARL has not come within
    /// `transport.arl_timeout_secs` of their last sending, at most `transport.arl_max_resends`
    /// times (at a turn of the batcher after that time); returns whether one failed.
    async fn resend_attachments(&self) -> Result<bool, String> {
        let live = self.live.get();
        let (cutoff, max) = (fse_queue::stamp_ago(live.arl_timeout), live.arl_max_resends);
        let lots = self
            .store
            .read(move |q| q.attachment_lots_to_resend(cutoff, max))
            .await
            .map_err(|e| e.to_string())?;
        let mut failed = false;
        for lot in lots {
            let der = encode(&lot)?;
            if let Err(e) = self
                .transport
                .send_attachment_lot(&lot.lot_id, &lot.destination, &der)
                .await
            {
                tracing::warn!(lot = %lot.lot_id, error = %e, "attachment lot without its ARL not sent again; tried later");
                failed = true;
                continue;
            }
            let id = lot.lot_id.clone();
            let attempt = self
                .store
                .call(move |q| q.mark_attachment_lot_resent(&id))
                .await
                .map_err(|e| e.to_string())?;
            tracing::warn!(lot = %lot.lot_id, attempt, max_resends = max, "no ARL for this attachment lot in time: sent again");
        }
        Ok(failed)
    }

    /// Publishes `sheet.paper_missing` once per sheet (and process) for each degraded-mode
    /// sheet without a `degraded_paper` document `[attachments] degraded_paper_days` calendar
    /// days (UTC) after its creation; at most once a minute unless `asked`.
    pub(super) async fn paper_alarms(&self, asked: bool) -> Result<(), String> {
        {
            let mut look = self.paper_alarmed.lock().unwrap_or_else(|p| p.into_inner());
            let now = std::time::Instant::now();
            if !asked && look.1.is_some_and(|at| now < at + PAPER_LOOK_EVERY) {
                return Ok(());
            }
            look.1 = Some(now);
        }
        let cutoff = paper_cutoff(self.attachments.degraded_paper_days, chrono::Utc::now());
        let missing = self
            .store
            .read(move |q| q.sheets_without_paper(&cutoff))
            .await
            .map_err(|e| e.to_string())?;
        let mut look = self.paper_alarmed.lock().unwrap_or_else(|p| p.into_inner());
        for (id, practitioner, number, created_at) in degraded(missing) {
            if look.0.insert(id.get()) {
                tracing::warn!(sheet = id.get(), %created_at, "degraded-mode sheet without its paper");
                self.events.publish(
                    "sheet.paper_missing",
                    serde_json::json!({ "sheet_id": id, "number": number, "practitioner_id": practitioner, "created_at": created_at, "days": self.attachments.degraded_paper_days }),
                );
            }
        }
        Ok(())
    }
}

/// The creation time before which a sheet is `days` calendar days old today (UTC):
/// midnight of the day after `today − days`, as `YYYYMMDDHHMMSSZ`.
pub(crate) fn paper_cutoff(days: u32, now: chrono::DateTime<chrono::Utc>) -> String {
    let day = now.date_naive() - chrono::Days::new(u64::from(days)) + chrono::Days::new(1);
    format!("{}000000Z", day.format("%Y%m%d"))
}

/// The sheets among `rows` made in degraded mode: (id, practitioner, number, created_at).
#[allow(clippy::type_complexity)]
pub(crate) fn degraded(
    rows: Vec<(
        fse_queue::SheetId,
        fse_queue::PractitionerId,
        u64,
        String,
        Vec<u8>,
    )>,
) -> Vec<(fse_queue::SheetId, fse_queue::PractitionerId, u64, String)> {
    rows.into_iter()
        .filter(|r| {
            fse_formats::fse::CareSheet::from_der(&r.4)
                .is_ok_and(|s| s.mode == fse_formats::fse::Mode::Degraded)
        })
        .map(|(id, p, n, c, _)| (id, p, n, c))
        .collect()
}

/// What the doctor says of the degraded-mode sheets still without their paper after `days`
/// days: `Ok` when there is none, else `Err` naming them (the first 20).
#[allow(clippy::type_complexity)]
pub(crate) fn missing_papers(
    rows: Vec<(fse_queue::SheetId, fse_queue::PractitionerId, u64, String)>,
    days: u32,
) -> Result<String, String> {
    if rows.is_empty() {
        return Ok(format!(
            "no degraded-mode sheet waits for its paper more than {days} day(s)"
        ));
    }
    let named: Vec<String> = rows
        .iter()
        .take(20)
        .map(|(id, p, n, c)| format!("sheet {id} ({p} no. {n}, made {c})"))
        .collect();
    Err(format!(
        "{} degraded-mode sheet(s) without their paper after {days} day(s): {}{}",
        rows.len(),
        named.join("; "),
        if rows.len() > 20 { "; …" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn paper_cutoff_counts_calendar_days() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        // 3 days: a sheet of 4 December (7 − 3) or before is late: before 5 December 00:00.
        assert_eq!(super::paper_cutoff(3, now), "20261205000000Z");
        // 0 days: every sheet made up to today.
        assert_eq!(super::paper_cutoff(0, now), "20261208000000Z");
    }
}
