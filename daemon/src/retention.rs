//! Retention: acknowledged lots are kept `retention.days` (never under 90),
//! then archived — the signed lot, its CMS, its ARL and its payment returns written as files,
//! synced — and only then purged from the queue. Runs at start-up and every
//! six hours.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fse_queue::{LotId, Stamp};

use crate::shutdown::Shutdown;
use crate::store::Store;

/// The shortest retention the configuration accepts, in days.
pub const MIN_DAYS: u32 = 90;

/// How often retention runs.
pub const PERIOD: Duration = Duration::from_secs(6 * 3600);

/// Writes `bytes` to `path` durably: a temporary file, synced, renamed into place.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Archives and purges every acknowledged lot last changed before `before`; returns the lots
/// purged. A lot whose files cannot be written stays in the queue.
pub async fn purge_before(
    store: &Store,
    archive: &Path,
    before: Stamp,
) -> Result<Vec<LotId>, String> {
    let lots = store
        .call(move |q| q.lots_to_purge(before))
        .await
        .map_err(|e| e.to_string())?;
    if lots.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut purged = Vec::new();
    for lot in lots {
        let id = lot.id.clone();
        let (cms, ack, payments) = store
            .call(move |q| {
                Ok((
                    q.lot_cms(&id)?,
                    q.get_ack(&id)?,
                    q.payments(Some(&id), usize::MAX)?,
                ))
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        if let Some(der) = lot.signed_der.clone() {
            files.push((archive.join(format!("{}.lot.der", lot.id)), der));
        }
        if let Some(cms) = cms {
            files.push((archive.join(format!("{}.p7", lot.id)), cms));
        }
        if let Some(ack) = ack {
            files.push((archive.join(format!("{}.arl.der", lot.id)), ack.der));
        }
        if !payments.is_empty() {
            // The lot's payment returns as recorded (per sheet: paid or refused, the insurer's
            // date, when fsed recorded it): the late-payment history outlives the queue's rows.
            let json = serde_json::to_vec_pretty(&payments).map_err(|e| e.to_string())?;
            files.push((archive.join(format!("{}.payments.json", lot.id)), json));
        }
        let written = files.iter().try_for_each(|(p, b)| {
            write_durably(p, b).map_err(|e| format!("{}: {e}", p.display()))
        });
        if let Err(e) = written {
            tracing::error!(lot = %lot.id, error = %e, "archive failed; the lot stays in the queue");
            continue;
        }
        if let Ok(dir) = std::fs::File::open(archive) {
            let _ = dir.sync_all();
        }
        let id = lot.id.clone();
        match store.call(move |q| q.purge_lot(&id)).await {
            Ok(n) => {
                tracing::info!(lot = %lot.id, sheets = n, "lot archived and purged");
                purged.push(lot.id);
            }
            Err(e) => tracing::error!(lot = %lot.id, error = %e, "purge failed"),
        }
    }
    Ok(purged)
}

/// Runs retention now and every [`PERIOD`] until shutdown.
pub async fn run(store: Store, archive: PathBuf, days: u32, mut shutdown: Shutdown) {
    loop {
        let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(days.max(MIN_DAYS)));
        let before = cutoff_stamp(cutoff);
        if let Err(e) = purge_before(&store, &archive, before).await {
            tracing::warn!(error = %e, "retention pass failed");
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// The stamp a lot last changed before is purged at `cutoff`: a change within the cutoff's
/// second counts as before it (the cutoff is taken to the second, as it always was).
fn cutoff_stamp(cutoff: chrono::DateTime<chrono::Utc>) -> Stamp {
    use chrono::Timelike;
    let second = cutoff.with_nanosecond(0).unwrap_or(cutoff);
    Stamp::at(second + chrono::Duration::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fse_queue::NewSheet;

    #[test]
    fn a_change_within_the_cutoffs_second_is_before_it() {
        // 2026-11-30T09:42:10.500Z is 1 796 031 730 s and 500 ms after the epoch.
        let cutoff = chrono::DateTime::from_timestamp(1_796_031_730, 500_000_000).unwrap();
        assert_eq!(cutoff_stamp(cutoff).to_string(), "2026-11-30T09:42:11.000Z");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn acknowledged_lots_are_archived_then_purged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.db")).unwrap();
        let lot_id = store
            .call(|q| {
                q.insert_sheet(&NewSheet {
                    practitioner_id: "8A".into(),
                    number: 1,
                    destination: "017510001".into(),
                    der: vec![0x30, 0x00],
                    created_at: "20261116093000Z".parse().unwrap(),
                    ..Default::default()
                })?;
                let lot = q
                    .close_lots(None, 10, "20261116093000Z".parse().unwrap())?
                    .remove(0);
                q.mark_lot_signed_with_cms(&lot.id, b"signed lot", Some(b"cms"))?;
                q.mark_lot_sent(&lot.id)?;
                Ok(lot.id)
            })
            .await
            .unwrap();
        let archive = dir.path().join("archive");
        // Sent but not acknowledged: nothing to purge.
        let none = purge_before(
            &store,
            &archive,
            "9999-12-31T00:00:00.000Z".parse().unwrap(),
        )
        .await
        .unwrap();
        assert!(none.is_empty());
        let id = lot_id.clone();
        store
            .call(move |q| {
                let arl = fse_formats::ack::Arl {
                    lot_id: id.to_string(),
                    merkle_root: hex::encode([0u8; 32]),
                    status: fse_formats::ack::ArlStatus::Positive,
                    insurer: "017510001".into(),
                    received_at: "20261116100000Z".into(),
                    rejections: vec![],
                };
                q.record_arl(&arl, b"arl der")?;
                // Paid: its row references the sheet, and goes to the archive with it.
                let paid = fse_formats::ack::PaymentReturn {
                    lot_id: id.to_string(),
                    insurer: "017510001".into(),
                    issued_at: "20261120100000Z".into(),
                    payments: vec![fse_formats::ack::Payment {
                        sheet_number: 1,
                        outcome: fse_formats::ack::PaymentOutcome::Paid { amount_cents: 1900 },
                    }],
                };
                assert_eq!(q.record_payments(&paid)?.applied.len(), 1);
                Ok(())
            })
            .await
            .unwrap();
        // Too recent for this cutoff.
        let none = purge_before(
            &store,
            &archive,
            "2000-01-01T00:00:00.000Z".parse().unwrap(),
        )
        .await
        .unwrap();
        assert!(none.is_empty());
        let purged = purge_before(
            &store,
            &archive,
            "9999-12-31T00:00:00.000Z".parse().unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(purged, vec![lot_id.clone()]);
        assert_eq!(
            std::fs::read(archive.join(format!("{lot_id}.lot.der"))).unwrap(),
            b"signed lot"
        );
        assert_eq!(
            std::fs::read(archive.join(format!("{lot_id}.p7"))).unwrap(),
            b"cms"
        );
        assert_eq!(
            std::fs::read(archive.join(format!("{lot_id}.arl.der"))).unwrap(),
            b"arl der"
        );
        let payments: serde_json::Value = serde_json::from_slice(
            &std::fs::read(archive.join(format!("{lot_id}.payments.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(payments[0]["number"], 1, "{payments}");
        assert_eq!(payments[0]["amount_cents"], 1900, "{payments}");
        assert_eq!(payments[0]["issued_at"], "20261120100000Z", "{payments}");
        let id = lot_id.clone();
        assert!(store.call(move |q| q.get_lot(&id)).await.unwrap().is_none());
    }
}
