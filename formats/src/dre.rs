//! The DRE (demande de remboursement électronique): what the AMC needs to pay
//! its share of a care sheet in tiers payant — its model, JSON rendering and
//! DER codec per `formats/asn1/fsed.asn` (`Dre`).
//!
//! A DRE is derived from its sheet, never typed: [`Dre::from_sheet`] makes
//! one when the AMC pays the practitioner directly, and carries SHA-256 of
//! the sheet's DER body so the AMC can match it with the AMO's data.

use asn1_rs::{DerSequence, FromDer, Tagged, ToDer, ToDerSequence};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::der::{bytes_n, octets, DerError};
use crate::fse::{BeneficiaryDer, CareSheet, SheetBeneficiary};

/// Version of the `Dre` encoding.
pub const DRE_VERSION: u32 = 1;

/// One act as the AMC sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DreAct {
    /// Act code.
    pub code: String,
    /// Date of care `YYYYMMDD`.
    pub date: String,
    /// Quantity.
    pub quantity: u32,
    /// Reimbursement base, cents.
    pub base_cents: u64,
    /// What the AMO pays on it, participation deducted.
    pub amo_cents: u64,
    /// What the AMC pays on it (the ticket modérateur).
    pub amc_cents: u64,
    /// Excess fee, cents (not paid by the AMC in this version).
    pub excess_cents: u64,
}

/// A DRE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dre {
    /// The sheet's number.
    pub sheet_number: u64,
    /// The sheet's creation time.
    pub created_at: String,
    /// The practitioner's national identifier.
    pub practitioner_id: String,
    /// The billing number paid (the replaced practitioner's for a remplaçant).
    pub billing_number: String,
    /// The beneficiary.
    pub beneficiary: SheetBeneficiary,
    /// The AMC's number (from the Vitale card).
    pub amc_number: String,
    /// The acts.
    pub acts: Vec<DreAct>,
    /// Total charged, cents.
    pub total_cents: u64,
    /// AMO share, cents.
    pub amo_cents: u64,
    /// AMC share, cents: what this DRE asks for.
    pub amc_cents: u64,
    /// Last day to send, `YYYYMMDD` (the sheet's).
    pub deadline: String,
    /// SHA-256 of the sheet's DER body, hex.
    pub sheet_digest: String,
}

#[derive(DerSequence, ToDerSequence)]
struct DreActDer {
    code: String,
    date: String,
    quantity: u32,
    base_cents: u64,
    amo_cents: u64,
    amc_cents: u64,
    excess_cents: u64,
}

#[derive(DerSequence, ToDerSequence)]
struct DreDer<'a> {
    version: u32,
    sheet_number: u64,
    created_at: String,
    practitioner_id: String,
    billing_number: String,
    beneficiary: BeneficiaryDer,
    amc_number: String,
    acts: Vec<DreActDer>,
    total_cents: u64,
    amo_cents: u64,
    amc_cents: u64,
    deadline: String,
    sheet_digest: asn1_rs::OctetString<'a>,
}

impl Dre {
    /// The DRE of `sheet`, when its AMC share is paid to the practitioner directly by an AMC
    /// (tiers payant AMC with an AMC number, outside the CSS, which the AMO organism pays).
    pub fn from_sheet(sheet: &CareSheet) -> Result<Option<Dre>, DerError> {
        let tp = &sheet.tiers_payant;
        let Some(amc_number) = tp.amc_number.clone() else {
            return Ok(None);
        };
        if !tp.amc || sheet.cover.css || sheet.amounts.amc_cents == 0 {
            return Ok(None);
        }
        let digest: [u8; 32] = Sha256::digest(sheet.body_to_der()?).into();
        let billing_number = sheet.payee_billing_number().to_string();
        Ok(Some(Dre {
            sheet_number: sheet.number,
            created_at: sheet.created_at.clone(),
            practitioner_id: sheet.practitioner.national_id.clone(),
            billing_number,
            beneficiary: sheet.beneficiary.clone(),
            amc_number,
            acts: sheet
                .acts
                .iter()
                .map(|a| DreAct {
                    code: a.code.clone(),
                    date: a.date.clone(),
                    quantity: a.quantity,
                    base_cents: a.base_cents,
                    amo_cents: a.amo_cents.saturating_sub(a.pf_cents),
                    amc_cents: a.base_cents.saturating_sub(a.amo_cents),
                    excess_cents: a.excess_cents,
                })
                .collect(),
            total_cents: sheet.amounts.total_cents,
            amo_cents: sheet.amounts.amo_cents,
            amc_cents: sheet.amounts.amc_cents,
            deadline: sheet.deadline.clone(),
            sheet_digest: hex::encode(digest),
        }))
    }

    /// DER per `Dre` in `fsed.asn`.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let digest = hex::decode(&self.sheet_digest)
            .map_err(|_| DerError::field("sheet_digest", "not hex"))?;
        let digest = bytes_n::<32>(&digest, "sheet_digest")?;
        let der = DreDer {
            version: DRE_VERSION,
            sheet_number: self.sheet_number,
            created_at: self.created_at.clone(),
            practitioner_id: self.practitioner_id.clone(),
            billing_number: self.billing_number.clone(),
            beneficiary: BeneficiaryDer::from_model(&self.beneficiary),
            amc_number: self.amc_number.clone(),
            acts: self
                .acts
                .iter()
                .map(|a| DreActDer {
                    code: a.code.clone(),
                    date: a.date.clone(),
                    quantity: a.quantity,
                    base_cents: a.base_cents,
                    amo_cents: a.amo_cents,
                    amc_cents: a.amc_cents,
                    excess_cents: a.excess_cents,
                })
                .collect(),
            total_cents: self.total_cents,
            amo_cents: self.amo_cents,
            amc_cents: self.amc_cents,
            deadline: self.deadline.clone(),
            sheet_digest: asn1_rs::OctetString::new(&digest),
        };
        Ok(der.to_der_vec()?)
    }

    /// Decodes a DRE, refusing trailing bytes, unknown versions, out-of-range fields and any
    /// encoding that is not the canonical DER of what it decodes to.
    pub fn from_der(bytes: &[u8]) -> Result<Dre, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, d) = DreDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("dre", "trailing bytes"));
        }
        if d.version != DRE_VERSION {
            return Err(DerError::field("version", "unsupported DRE version"));
        }
        if d.acts.is_empty() {
            return Err(DerError::field("acts", "a DRE has at least one act"));
        }
        let digest = bytes_n::<32>(octets(&d.sheet_digest), "sheet_digest")?;
        let dre = Dre {
            sheet_number: d.sheet_number,
            created_at: d.created_at,
            practitioner_id: d.practitioner_id,
            billing_number: d.billing_number,
            beneficiary: d.beneficiary.into_model()?,
            amc_number: d.amc_number,
            acts: d
                .acts
                .into_iter()
                .map(|a| DreAct {
                    code: a.code,
                    date: a.date,
                    quantity: a.quantity,
                    base_cents: a.base_cents,
                    amo_cents: a.amo_cents,
                    amc_cents: a.amc_cents,
                    excess_cents: a.excess_cents,
                })
                .collect(),
            total_cents: d.total_cents,
            amo_cents: d.amo_cents,
            amc_cents: d.amc_cents,
            deadline: d.deadline,
            sheet_digest: hex::encode(digest),
        };
        crate::der::require_canonical(bytes, &dre.to_der()?, "dre")?;
        Ok(dre)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amc_sheet() -> CareSheet {
        let mut s = CareSheet::sample(7);
        s.tiers_payant.amc = true;
        s.tiers_payant.amc_number = Some("75500017".into());
        s.amounts.amc_cents = 900;
        s.amounts.patient_cents = 200;
        s.amounts.due_cents = 200;
        s
    }

    #[test]
    fn a_dre_is_made_only_for_an_amc_paying_directly() {
        assert_eq!(Dre::from_sheet(&CareSheet::sample(1)).unwrap(), None);
        let mut css = amc_sheet();
        css.cover.css = true;
        assert_eq!(Dre::from_sheet(&css).unwrap(), None);
        let dre = Dre::from_sheet(&amc_sheet()).unwrap().unwrap();
        assert_eq!(dre.amc_cents, 900);
        assert_eq!(dre.acts[0].amc_cents, 900);
        assert_eq!(dre.acts[0].amo_cents, 1900);
        assert_eq!(dre.amc_number, "75500017");
    }

    #[test]
    fn der_round_trip_and_truncations() {
        let dre = Dre::from_sheet(&amc_sheet()).unwrap().unwrap();
        let der = dre.to_der().unwrap();
        assert_eq!(Dre::from_der(&der).unwrap(), dre);
        for cut in 0..der.len() {
            assert!(Dre::from_der(&der[..cut]).is_err());
        }
        let mut long = der.clone();
        long.push(0);
        assert!(Dre::from_der(&long).is_err());
    }
}
