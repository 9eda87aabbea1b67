//! The insurer's checks of one lot: what is accepted or refused, with which code and why.

use fse_formats::ack::{Arl, ArlStatus, Rejection};
use fse_formats::der::DerError;
use fse_formats::lot::{LotError, SignedLot};
use fse_formats::pki::TrustStore;

use super::UNKNOWN_LOT_ID;

/// Judges one lot: a positive ARL when it decodes and verifies, else a negative one with the reason.
///
/// `now` is the time of receipt, `YYYYMMDDHHMMSSZ`. Bytes that do not decode
/// get [`UNKNOWN_LOT_ID`], an all-zero root and the code `LOT_MALFORMED`.
pub fn answer_lot(bytes: &[u8], insurer: &str, now: &str) -> Arl {
    judge(SignedLot::from_der(bytes), insurer, now, None)
}

/// [`answer_lot`] on an already decoded lot. With a trust store, the lot must carry its
/// signer's certificate and the certificate must be valid at `now` (chain, dates, CRLs, key).
/// Every sheet of a lot that verifies is then re-priced (`rules::check_shares`): a sheet with
/// a wrong share is refused by number, with the field and the two figures.
pub(crate) fn judge(
    decoded: Result<SignedLot, DerError>,
    insurer: &str,
    now: &str,
    trust: Option<&TrustStore>,
) -> Arl {
    let arl = |lot_id: String, merkle_root: String, rejections: Vec<Rejection>| Arl {
        lot_id,
        merkle_root,
        status: if rejections.is_empty() {
            ArlStatus::Positive
        } else {
            ArlStatus::Negative
        },
        insurer: insurer.to_string(),
        received_at: now.to_string(),
        rejections,
    };
    let rejection = |sheet_number: Option<u64>, code: &str, reason: String| Rejection {
        sheet_number,
        code: code.to_string(),
        reason,
    };
    let lot = match decoded {
        Ok(lot) => lot,
        Err(e) => {
            return arl(
                UNKNOWN_LOT_ID.into(),
                hex::encode([0u8; 32]),
                vec![rejection(None, "LOT_MALFORMED", e.to_string())],
            )
        }
    };
    let root = hex::encode(lot.header.merkle_root);
    let verified = match trust {
        None => lot.verify(),
        Some(store) => match &lot.signer_certificate {
            None => Err(LotError::Certificate(
                "the lot does not carry its signer's certificate".into(),
            )),
            Some(cert) => {
                let at = chrono::NaiveDateTime::parse_from_str(now, "%Y%m%d%H%M%SZ")
                    .map(|t| t.and_utc().timestamp())
                    .unwrap_or_else(|_| chrono::Utc::now().timestamp());
                lot.verify_trusted(store, cert, at)
            }
        },
    };
    let rejections = match verified {
        Ok(sheets) => sheet_rejections(&sheets, trust),
        Err(e) => {
            let (code, sheet) = match &e {
                LotError::Der(_) => ("LOT_MALFORMED", None),
                LotError::Count { .. } => ("LOT_COUNT", None),
                LotError::Root => ("LOT_MERKLE_ROOT", None),
                LotError::Signature => ("LOT_SIGNATURE", None),
                LotError::Certificate(_) => ("LOT_CERTIFICATE", None),
                LotError::Inclusion => ("LOT_MERKLE_ROOT", None),
                LotError::Sheet { index, .. } => (
                    "SHEET_INVALID",
                    lot.entries
                        .get(*index)
                        .and_then(|en| fse_formats::fse::CareSheet::from_der(&en.sheet).ok())
                        .map(|s| s.number),
                ),
            };
            vec![rejection(sheet, code, e.to_string())]
        }
    };
    arl(lot.header.lot_id, root, rejections)
}

/// The rejections of the sheets of a lot that verified: a share that does not re-price
/// (`SHEET_SHARES`), an app sheet whose token does not hold (`APP_PRESENCE`).
pub(crate) fn sheet_rejections(
    sheets: &[fse_formats::fse::CareSheet],
    trust: Option<&TrustStore>,
) -> Vec<Rejection> {
    sheets
        .iter()
        .filter_map(|sheet| {
            fse_formats::rules::check_shares(sheet, fse_formats::rules::Tables::builtin())
                .err()
                .map(|e| Rejection {
                    sheet_number: Some(sheet.number),
                    code: "SHEET_SHARES".to_string(),
                    reason: e.to_string(),
                })
        })
        .chain(super::app_check::rejections(sheets, trust))
        .collect()
}
