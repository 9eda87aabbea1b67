//! The care sheet (FSE): its model, its JSON rendering (serde) and its DER
//! codec per `formats/asn1/fsed.asn` (`CareSheet`).
//!
//! The sheet splits in a body — everything priced and signed — and the
//! patient's proof of presence: the Vitale card's signature over
//! SHA-256(DER(body)), which [`CareSheet::presence_challenge`] computes.

use asn1_rs::{DerSequence, FromDer, Tagged, ToDer, ToDerSequence};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::der::{bytes_n, octets, DerError};

/// Version of the `CareSheet` encoding.
pub const SHEET_VERSION: u32 = 1;

/// The practitioner a sheet is made by, as read from the CPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SheetPractitioner {
    /// National identifier (`8` + RPPS or `0` + ADELI).
    pub national_id: String,
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// Profession code.
    pub profession: String,
    /// Specialty code.
    pub specialty: String,
    /// Billing number of the chosen situation d'exercice.
    pub billing_number: String,
    /// Convention sector of that situation.
    pub sector: u8,
    /// Serial number of the CPS used.
    pub cps_serial: String,
}

/// The beneficiary a sheet is for, as read from the Vitale card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SheetBeneficiary {
    /// NIR with its key (15 characters).
    pub nir: String,
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// Birth date `YYYYMMDD`.
    pub birth_date: String,
    /// Birth rank.
    pub rank: u8,
    /// AMO organism code: régime (2) caisse (3) centre (4).
    pub organism: String,
}

/// One billed act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    /// NGAP letter key or CCAM code (e.g. `G`).
    pub code: String,
    /// Coefficient in hundredths (100 = 1).
    pub coefficient: u32,
    /// Quantity.
    pub quantity: u32,
    /// Date of care `YYYYMMDD`.
    pub date: String,
    /// Fee charged, in cents (base plus excess).
    pub fee_cents: u64,
}

/// The computed amounts of a sheet, in cents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    /// Total charged.
    pub total_cents: u64,
    /// Reimbursement base.
    pub base_cents: u64,
    /// AMO rate in percent.
    pub amo_rate: u8,
    /// What the AMO pays, participation forfaitaire deducted.
    pub amo_cents: u64,
    /// Participation forfaitaire withheld.
    pub pf_cents: u64,
    /// What the patient owes.
    pub patient_cents: u64,
}

/// Whether the patient's card vouched for the sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Vitale card present and signed the proof of presence.
    Secured,
    /// No Vitale card: a paper sheet must follow.
    Degraded,
}

/// The Vitale card's proof that the patient was there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Vitale card serial.
    pub vitale_serial: String,
    /// The card's Ed25519 public key (hex in JSON).
    pub public_key: String,
    /// Its signature over [`CareSheet::presence_challenge`] (hex in JSON).
    pub signature: String,
}

/// A care sheet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CareSheet {
    /// Sheet number, unique per practitioner.
    pub number: u64,
    /// Creation time, `YYYYMMDDHHMMSSZ` (UTC).
    pub created_at: String,
    /// Who made it.
    pub practitioner: SheetPractitioner,
    /// For whom.
    pub beneficiary: SheetBeneficiary,
    /// The acts.
    pub acts: Vec<Act>,
    /// The amounts.
    pub amounts: Amounts,
    /// Secured or degraded.
    pub mode: Mode,
    /// The proof of presence (secured mode only).
    pub presence: Option<Presence>,
}

// ------------------------------------------------------------ DER structures

#[derive(DerSequence, ToDerSequence)]
struct PractitionerDer {
    national_id: String,
    surname: String,
    given_name: String,
    profession: String,
    specialty: String,
    billing_number: String,
    sector: u32,
    cps_serial: String,
}

#[derive(DerSequence, ToDerSequence)]
struct BeneficiaryDer {
    nir: String,
    surname: String,
    given_name: String,
    birth_date: String,
    rank: u32,
    organism: String,
}

#[derive(DerSequence, ToDerSequence)]
struct ActDer {
    code: String,
    coefficient: u32,
    quantity: u32,
    date: String,
    fee_cents: u64,
}

#[derive(DerSequence, ToDerSequence)]
struct AmountsDer {
    total_cents: u64,
    base_cents: u64,
    amo_rate: u32,
    amo_cents: u64,
    pf_cents: u64,
    patient_cents: u64,
}

#[derive(DerSequence, ToDerSequence)]
struct BodyDer {
    version: u32,
    number: u64,
    created_at: String,
    practitioner: PractitionerDer,
    beneficiary: BeneficiaryDer,
    acts: Vec<ActDer>,
    amounts: AmountsDer,
    mode: u32,
}

#[derive(DerSequence, ToDerSequence)]
struct PresenceDer<'a> {
    vitale_serial: String,
    public_key: asn1_rs::OctetString<'a>,
    signature: asn1_rs::OctetString<'a>,
}

impl CareSheet {
    fn body_der(&self) -> BodyDer {
        let p = &self.practitioner;
        let b = &self.beneficiary;
        let a = &self.amounts;
        BodyDer {
            version: SHEET_VERSION,
            number: self.number,
            created_at: self.created_at.clone(),
            practitioner: PractitionerDer {
                national_id: p.national_id.clone(),
                surname: p.surname.clone(),
                given_name: p.given_name.clone(),
                profession: p.profession.clone(),
                specialty: p.specialty.clone(),
                billing_number: p.billing_number.clone(),
                sector: u32::from(p.sector),
                cps_serial: p.cps_serial.clone(),
            },
            beneficiary: BeneficiaryDer {
                nir: b.nir.clone(),
                surname: b.surname.clone(),
                given_name: b.given_name.clone(),
                birth_date: b.birth_date.clone(),
                rank: u32::from(b.rank),
                organism: b.organism.clone(),
            },
            acts: self
                .acts
                .iter()
                .map(|x| ActDer {
                    code: x.code.clone(),
                    coefficient: x.coefficient,
                    quantity: x.quantity,
                    date: x.date.clone(),
                    fee_cents: x.fee_cents,
                })
                .collect(),
            amounts: AmountsDer {
                total_cents: a.total_cents,
                base_cents: a.base_cents,
                amo_rate: u32::from(a.amo_rate),
                amo_cents: a.amo_cents,
                pf_cents: a.pf_cents,
                patient_cents: a.patient_cents,
            },
            mode: match self.mode {
                Mode::Secured => 0,
                Mode::Degraded => 1,
            },
        }
    }

    /// DER of the sheet body (everything but the proof of presence).
    pub fn body_to_der(&self) -> Result<Vec<u8>, DerError> {
        Ok(self.body_der().to_der_vec()?)
    }

    /// The challenge the Vitale card signs: SHA-256 of the DER body.
    pub fn presence_challenge(&self) -> Result<[u8; 32], DerError> {
        Ok(Sha256::digest(self.body_to_der()?).into())
    }

    /// DER of the whole sheet: `SEQUENCE { body, presence SEQUENCE SIZE(0..1) OF PresenceProof }`.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let mut content = self.body_to_der()?;
        let mut proofs = Vec::new();
        if let Some(p) = &self.presence {
            let key = hex::decode(&p.public_key)
                .map_err(|_| DerError::field("presence.public_key", "not hex"))?;
            let sig = hex::decode(&p.signature)
                .map_err(|_| DerError::field("presence.signature", "not hex"))?;
            proofs.push(PresenceDer {
                vitale_serial: p.vitale_serial.clone(),
                public_key: asn1_rs::OctetString::new(&key),
                signature: asn1_rs::OctetString::new(&sig),
            });
            content.extend(proofs.to_der_vec()?);
        } else {
            content.extend(proofs.to_der_vec()?);
        }
        Ok(crate::der::sequence(&content))
    }

    /// Decodes a sheet from DER, refusing trailing bytes and out-of-range fields.
    pub fn from_der(bytes: &[u8]) -> Result<CareSheet, DerError> {
        let (rest, seq) = asn1_rs::Sequence::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("sheet", "trailing bytes"));
        }
        let inner = seq.content.as_ref();
        let (inner, body) = BodyDer::from_der(inner)?;
        let (inner, proofs) = <Vec<PresenceDer>>::from_der(inner)?;
        if !inner.is_empty() {
            return Err(DerError::field("sheet", "trailing fields"));
        }
        if body.version != SHEET_VERSION {
            return Err(DerError::field("version", "unsupported sheet version"));
        }
        let small = |v: u32, name: &'static str| {
            u8::try_from(v).map_err(|_| DerError::field(name, "out of range"))
        };
        let presence = match proofs.as_slice() {
            [] => None,
            [p] => Some(Presence {
                vitale_serial: p.vitale_serial.clone(),
                public_key: hex::encode(bytes_n::<32>(
                    octets(&p.public_key),
                    "presence.public_key",
                )?),
                signature: hex::encode(bytes_n::<64>(octets(&p.signature), "presence.signature")?),
            }),
            _ => return Err(DerError::field("presence", "more than one proof")),
        };
        Ok(CareSheet {
            number: body.number,
            created_at: body.created_at,
            practitioner: SheetPractitioner {
                national_id: body.practitioner.national_id,
                surname: body.practitioner.surname,
                given_name: body.practitioner.given_name,
                profession: body.practitioner.profession,
                specialty: body.practitioner.specialty,
                billing_number: body.practitioner.billing_number,
                sector: small(body.practitioner.sector, "practitioner.sector")?,
                cps_serial: body.practitioner.cps_serial,
            },
            beneficiary: SheetBeneficiary {
                nir: body.beneficiary.nir,
                surname: body.beneficiary.surname,
                given_name: body.beneficiary.given_name,
                birth_date: body.beneficiary.birth_date,
                rank: small(body.beneficiary.rank, "beneficiary.rank")?,
                organism: body.beneficiary.organism,
            },
            acts: body
                .acts
                .into_iter()
                .map(|a| Act {
                    code: a.code,
                    coefficient: a.coefficient,
                    quantity: a.quantity,
                    date: a.date,
                    fee_cents: a.fee_cents,
                })
                .collect(),
            amounts: Amounts {
                total_cents: body.amounts.total_cents,
                base_cents: body.amounts.base_cents,
                amo_rate: small(body.amounts.amo_rate, "amounts.amo_rate")?,
                amo_cents: body.amounts.amo_cents,
                pf_cents: body.amounts.pf_cents,
                patient_cents: body.amounts.patient_cents,
            },
            mode: match body.mode {
                0 => Mode::Secured,
                1 => Mode::Degraded,
                _ => return Err(DerError::field("mode", "unknown mode")),
            },
            presence,
        })
    }

    /// Checks the Vitale proof of presence: present in secured mode, absent in degraded, signature valid.
    pub fn verify_presence(&self) -> Result<(), DerError> {
        match (self.mode, &self.presence) {
            (Mode::Degraded, None) => Ok(()),
            (Mode::Degraded, Some(_)) => Err(DerError::field(
                "presence",
                "degraded sheet carries a proof",
            )),
            (Mode::Secured, None) => Err(DerError::field(
                "presence",
                "secured sheet without proof of presence",
            )),
            (Mode::Secured, Some(p)) => {
                let key: [u8; 32] = hex::decode(&p.public_key)
                    .ok()
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| DerError::field("presence.public_key", "not 32 bytes of hex"))?;
                let sig = hex::decode(&p.signature)
                    .map_err(|_| DerError::field("presence.signature", "not hex"))?;
                if crate::cards::verify_signature(&key, &self.presence_challenge()?, &sig) {
                    Ok(())
                } else {
                    Err(DerError::field("presence.signature", "does not verify"))
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A realistic GP consultation sheet, secured mode without its proof yet.
    pub fn sample_sheet() -> CareSheet {
        CareSheet {
            number: 42,
            created_at: "20261122101500Z".into(),
            practitioner: SheetPractitioner {
                national_id: "810101234567".into(),
                surname: "MARTIN".into(),
                given_name: "Claire".into(),
                profession: "10".into(),
                specialty: "01".into(),
                billing_number: "751234567".into(),
                sector: 1,
                cps_serial: "CPS0001".into(),
            },
            beneficiary: SheetBeneficiary {
                nir: "185057800608491".into(),
                surname: "DUPONT".into(),
                given_name: "Jean".into(),
                birth_date: "19850512".into(),
                rank: 1,
                organism: "011751234".into(),
            },
            acts: vec![Act {
                code: "G".into(),
                coefficient: 100,
                quantity: 1,
                date: "20261122".into(),
                fee_cents: 3000,
            }],
            amounts: Amounts {
                total_cents: 3000,
                base_cents: 3000,
                amo_rate: 70,
                amo_cents: 1900,
                pf_cents: 200,
                patient_cents: 1100,
            },
            mode: Mode::Degraded,
            presence: None,
        }
    }

    #[test]
    fn der_round_trip_degraded_and_secured() {
        use ed25519_dalek::{Signer, SigningKey};
        let mut s = sample_sheet();
        let der = s.to_der().unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(CareSheet::from_der(&der).unwrap(), s);
        s.verify_presence().unwrap();

        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        s.mode = Mode::Secured;
        let sig = key.sign(&s.presence_challenge().unwrap());
        s.presence = Some(Presence {
            vitale_serial: "V123".into(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(sig.to_bytes()),
        });
        let der = s.to_der().unwrap();
        let back = CareSheet::from_der(&der).unwrap();
        assert_eq!(back, s);
        back.verify_presence().unwrap();

        let mut tampered = back.clone();
        tampered.amounts.amo_cents += 1;
        assert!(tampered.verify_presence().is_err());
    }

    #[test]
    fn truncated_der_is_an_error_not_a_panic() {
        let der = sample_sheet().to_der().unwrap();
        for cut in 0..der.len() {
            assert!(CareSheet::from_der(&der[..cut]).is_err());
        }
    }
}
