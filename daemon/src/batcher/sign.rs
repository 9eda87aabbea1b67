//! A lot's signature by its practitioner's CPS in this fsed's reader (in the batcher's turn on
//! that card), and what is made of it: the signed lot, its DRE lots and its CMS form.

use fse_formats::lot::{LotEntry, LotHeader, SignedLot};
use fse_queue::PractitionerId;

use super::Batcher;
use crate::cards::CardKey;

/// Why a lot was not signed at this turn.
pub(super) enum SignError {
    /// Its card is absent, locked or not allowed to sign: it waits, quietly.
    Waiting(String),
    /// The card was asked and did not sign (removed mid-signature, card error).
    Failed(String),
    /// The queue or the encoder failed.
    Other(String),
}

/// A lot's entries (each sheet with its salt) and the DRE made with each sheet, in the same
/// order.
pub(super) type LotEntries = (Vec<LotEntry>, Vec<Option<Vec<u8>>>);

/// A lot signed by a CPS: the signed lot, the DER of its header (what was signed) and the
/// card's certificate, when it holds one.
pub(super) type CpsSigned = (SignedLot, Vec<u8>, Option<Vec<u8>>);

/// A signed lot's DRE lots: for each AMC paid directly, its id, the DRE lot's DER and how many
/// DREs it holds.
type DreLots = Vec<(String, Vec<u8>, u64)>;

/// The lot's header signed by its practitioner's CPS, when present, its PIN verified and allowed
/// to sign lots on `today`: the signed lot, the DER of its header and the card's certificate
/// (when it holds one).
fn sign_with_cps(
    reg: &mut crate::cards::Registry,
    practitioner: &str,
    mut header: LotHeader,
    entries: Vec<LotEntry>,
    today: chrono::NaiveDate,
) -> Result<CpsSigned, SignError> {
    let slot = reg.cps_of(practitioner).ok_or(SignError::Waiting(
        "the practitioner's CPS is not present".into(),
    ))?;
    if !slot.pin_verified {
        return Err(SignError::Waiting(
            "the practitioner's CPS PIN is not verified".into(),
        ));
    }
    let cps = slot
        .cps
        .as_ref()
        .ok_or(SignError::Waiting("not a CPS".into()))?;
    if let Some((why, _)) =
        crate::cards::refusal_to_sign_lots(cps, slot.certificate.as_ref(), today)
    {
        return Err(SignError::Waiting(why));
    }
    header.cps_serial = cps.holder.serial.clone();
    header.signer_key = cps.public_key;
    let der = header
        .to_der()
        .map_err(|e| SignError::Other(format!("lot header encoding: {e}")))?;
    let certificate = cps.certificate.clone();
    let signature = slot
        .sign(&der)
        .map_err(|e| SignError::Failed(format!("CPS {}: {e}", header.cps_serial)))?;
    // Counted in the signing session; its last lot ends it (`cards::session`).
    slot.lot_signed();
    Ok((
        SignedLot {
            header,
            signature,
            entries,
            signer_certificate: certificate.clone(),
        },
        der,
        certificate,
    ))
}

/// The DRE lots of a signed lot (one per AMC paid directly: AMC, DER, DRE count) and, when the
/// card holds its certificate, the same signature as CMS SignedData over `header_der`.
pub(super) fn encode_dres_and_cms(
    signed: &SignedLot,
    dres: &[Option<Vec<u8>>],
    header_der: &[u8],
    certificate: Option<&[u8]>,
) -> Result<(DreLots, Option<Vec<u8>>), SignError> {
    // The DREs of this lot (made with their sheets), one DRE lot per AMC paid directly,
    // under the same signature.
    let dre_lots = fse_formats::dre_lot::DreLot::from_signed_with_dres(signed, dres)
        .and_then(|lots| {
            lots.into_iter()
                .map(|d| Ok((d.amc.clone(), d.to_der()?, d.entries.len() as u64)))
                .collect::<Result<Vec<_>, fse_formats::lot::LotError>>()
        })
        .map_err(|e| SignError::Other(format!("DRE lots: {e}")))?;
    // The same signature as CMS SignedData, when the card holds its certificate.
    let cms = match certificate {
        Some(cert) => Some(
            fse_formats::cms::signed_data(header_der, &signed.signature, cert, &[])
                .map_err(|e| SignError::Other(format!("CMS: {e}")))?,
        ),
        None => None,
    };
    Ok((dre_lots, cms))
}

impl Batcher {
    /// Signs a lot header with the practitioner's CPS in this fsed's reader, in the batcher's
    /// turn on that card.
    pub(super) async fn sign_here(
        &self,
        practitioner: PractitionerId,
        header: LotHeader,
        entries: Vec<LotEntry>,
        today: chrono::NaiveDate,
    ) -> Result<CpsSigned, SignError> {
        // The practitioner's CPS, by its serial, as the card thread last saw it.
        let serial = self.cards.snapshot().slots.iter().find_map(|s| {
            s.cps
                .as_ref()
                .filter(|c| c.holder.national_id == practitioner.as_str())
                .map(|c| c.holder.serial.clone())
        });
        let sign = move |reg: &mut crate::cards::Registry| {
            sign_with_cps(reg, &practitioner, header, entries, today)
        };
        match &serial {
            Some(serial) => {
                self.cards
                    .run_for(&self.caller, CardKey::Cps(Some(serial)), sign)
                    .await
            }
            None => self.cards.run(sign).await,
        }
        .map_err(|e| match e {
            // Other clients hold the card: the lot waits for its next turn.
            crate::cards::CardsError::Busy(b) => SignError::Waiting(b.to_string()),
            e => SignError::Other(e.to_string()),
        })?
    }
}
