//! A lot signed by its practitioner's CPS on another fsed: the same checks as a local CPS
//! (on this fsed's own view of the card and its certificate), then `cards.sign` under a
//! `request_id` made of the lot id and the SHA-256 of the header's DER, so that a pass after a
//! cut asks for the same signature and the card never signs twice.

use fse_formats::api;
use fse_formats::lot::{LotEntry, LotHeader, SignedLot};
use sha2::{Digest, Sha256};

use super::{RemoteCard, RemoteCards};

/// Why the remote CPS did not sign.
#[derive(Debug)]
pub enum Refused {
    /// The card may not sign now (absent, PIN not verified there, not allowed): the lot waits.
    Waiting(String),
    /// The card was asked and no signature came (the link broke, a card error): the lot stays
    /// closed and is signed at a later pass.
    Failed(String),
}

/// The `request_id` of a lot's signature: its id and the SHA-256 of its header's DER.
pub fn request_id(lot_id: &str, header_der: &[u8]) -> String {
    format!("{lot_id}:{}", hex::encode(Sha256::digest(header_der)))
}

/// The lot signed by `card`: the signed lot, its header's DER, the card's certificate.
pub async fn sign(
    remote: &RemoteCards,
    card: &RemoteCard,
    mut header: LotHeader,
    entries: Vec<LotEntry>,
    today: chrono::NaiveDate,
) -> Result<(SignedLot, Vec<u8>, Option<Vec<u8>>), Refused> {
    let at = &card.location.fsed;
    let cps = card
        .cps
        .as_ref()
        .ok_or_else(|| Refused::Waiting(format!("the card on fsed {at} is not a CPS")))?;
    if let Some((why, _)) =
        crate::cards::refusal_to_sign_lots(cps, card.certificate.as_ref(), today)
    {
        return Err(Refused::Waiting(format!("on fsed {at}: {why}")));
    }
    header.cps_serial = cps.holder.serial.clone();
    header.signer_key = cps.public_key;
    let der = header
        .to_der()
        .map_err(|e| Refused::Failed(format!("lot header encoding: {e}")))?;
    let id = request_id(&header.lot_id, &der);
    let signature = match remote.sign(card, &der, &id).await {
        Ok(sig) => sig,
        Err(e)
            if [api::PIN_REQUIRED, api::CARD_ABSENT, api::CARD_NOT_ALLOWED].contains(&e.0.code) =>
        {
            return Err(Refused::Waiting(e.0.message))
        }
        Err(e) => return Err(Refused::Failed(e.0.message)),
    };
    let certificate = cps.certificate.clone();
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
