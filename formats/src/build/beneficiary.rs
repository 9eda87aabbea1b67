//! Step 6 of a sheet: the beneficiary — chosen on the Vitale card, or typed from the paper
//! attestation in degraded mode — and the key his participation history is kept under.

use super::{parse_date, Refusal, NIR_INVALID, NIR_KEY_MISMATCH, VITALE_ABSENT};
use crate::api::FseCreateParams;
use crate::cards::{Beneficiary, VitaleData};
use crate::fse::SheetBeneficiary;
use crate::ids;

/// The refusal of a NIR that [`ids::nir_check`] finds wrong, on `field`.
fn nir_refusal(field: &str, e: ids::NirError, key_message: &str) -> Refusal {
    match e {
        ids::NirError::Key { .. } => Refusal::rule(NIR_KEY_MISMATCH, field, key_message),
        other => Refusal::rule(NIR_INVALID, field, other.to_string()),
    }
}

/// The beneficiary a request is for — chosen on the Vitale card, or typed in degraded mode —
/// and, in secured mode, the card's record of him.
pub fn beneficiary<'a>(
    p: &FseCreateParams,
    vitale: Option<&'a VitaleData>,
) -> Result<(SheetBeneficiary, Option<&'a Beneficiary>), Refusal> {
    if let Some(d) = &p.degraded {
        let b = d.beneficiary.as_ref().ok_or_else(|| {
            Refusal::invalid(
                "degraded.beneficiary",
                "degraded mode needs the beneficiary typed from the paper attestation",
            )
        })?;
        ids::nir_check(&b.nir).map_err(|e| {
            nir_refusal(
                "degraded.beneficiary.nir",
                e,
                "the NIR's key does not match (15 characters: 13 then the key)",
            )
        })?;
        if parse_date(&b.birth_date).is_none() {
            return Err(Refusal::invalid(
                "degraded.beneficiary.birth_date",
                "expected YYYYMMDD",
            ));
        }
        if !(1..=MAX_RANK).contains(&b.rank) {
            return Err(Refusal::invalid(
                "degraded.beneficiary.rank",
                format!(
                    "rank {} out of range: 1 to {MAX_RANK} (the birth rank: 1, 2 and more for \
                     twins and triplets)",
                    b.rank
                ),
            ));
        }
        if b.organism.len() != 9 || !b.organism.bytes().all(|c| c.is_ascii_digit()) {
            return Err(Refusal::invalid(
                "degraded.beneficiary.organism",
                "9 digits: régime (2), caisse (3), centre (4)",
            ));
        }
        return Ok((
            SheetBeneficiary {
                nir: b.nir.clone(),
                surname: b.surname.clone(),
                given_name: b.given_name.clone(),
                birth_date: b.birth_date.clone(),
                rank: b.rank,
                organism: b.organism.clone(),
            },
            None,
        ));
    }
    let Some(v) = vitale else {
        return Err(Refusal::card(
            VITALE_ABSENT,
            "vitale",
            "secured mode needs the patient's Vitale card (or ask for degraded mode)",
        ));
    };
    let b = v.beneficiaries.get(p.beneficiary).ok_or_else(|| {
        Refusal::invalid(
            "beneficiary",
            format!(
                "the Vitale card has {} beneficiaries",
                v.beneficiaries.len()
            ),
        )
    })?;
    ids::nir_check(&b.nir).map_err(|e| {
        nir_refusal(
            "beneficiary.nir",
            e,
            "the NIR's key on the card does not match",
        )
    })?;
    Ok((
        SheetBeneficiary {
            nir: b.nir.clone(),
            surname: b.surname.clone(),
            given_name: b.given_name.clone(),
            birth_date: b.birth_date.clone(),
            rank: b.rank,
            organism: v.organism.code(),
        },
        Some(b),
    ))
}

/// The highest birth rank (`CareSheet.beneficiary.rank`, `INTEGER (1..9)` in `fsed.asn`).
pub const MAX_RANK: u8 = 9;

/// The key under which the queue keeps a beneficiary's participation history. The history is
/// the beneficiary's, all professionals together (the year's cap needs them all); each line
/// names its professional (the day's cap is per professional): see [`history_on`].
pub fn history_key(b: &SheetBeneficiary) -> String {
    format!("{}:{}:{}", b.nir, b.birth_date, b.rank)
}
