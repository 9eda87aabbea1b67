//! The care sheet (FSE): its model, its JSON rendering (serde) and its DER
//! codec per `formats/asn1/fsed.asn` (`CareSheet`).
//!
//! The sheet splits in a body — everything priced and signed — and the
//! patient's proof of presence: the Vitale card's signature over
//! SHA-256(DER(body)), which [`CareSheet::presence_challenge`] computes.

use serde::{Deserialize, Serialize};

use crate::der::DerError;

mod codec;
pub(crate) use codec::BeneficiaryDer;

/// Version of the `CareSheet` encoding of a sheet priced on the rights read from the Vitale
/// card for it (secured mode) or typed from the paper attestation (degraded mode).
pub const SHEET_VERSION: u32 = 2;

/// Version of the `CareSheet` encoding of a sheet that records where its rights came from
/// ([`CareSheet::rights`]) or that the Vitale app vouched for ([`Mode::App`]): the body ends
/// with a `RightsOrigin`, and the presence may be the app's token. A sheet is written in the
/// lowest version that holds it, so a version 2 sheet stays byte for byte what it was.
pub const SHEET_VERSION_RIGHTS: u32 = 3;

pub use crate::care::{Amounts, CarePath, CoverKind, TiersPayant};

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

/// The practitioner a remplaçant replaces: the sheet is billed in his name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplacedPractitioner {
    /// National identifier.
    pub national_id: String,
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// His billing number.
    pub billing_number: String,
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

/// The practitioner who prescribed an act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prescriber {
    /// National identifier (`8` + RPPS or `0` + ADELI).
    pub national_id: String,
    /// Date of the prescription `YYYYMMDD`.
    pub date: String,
}

/// One billed act, with its priced shares.
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
    /// Modifiers (majorations), as codes.
    #[serde(default)]
    pub modifiers: Vec<String>,
    /// Prescriber, for acts on prescription.
    #[serde(default)]
    pub prescriber: Option<Prescriber>,
    /// Reimbursement base, cents.
    pub base_cents: u64,
    /// Excess fee (dépassement) above the base, cents.
    pub excess_cents: u64,
    /// AMO rate, percent.
    pub rate: u8,
    /// AMO share before the participation forfaitaire, cents.
    pub amo_cents: u64,
    /// Participation forfaitaire withheld on this act, cents.
    pub pf_cents: u64,
}

/// Work accident or occupational disease (AT/MP) details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AtMp {
    /// Date of the accident or first medical finding `YYYYMMDD`.
    pub date: String,
    /// AT/MP number given by the AMO.
    pub number: String,
}

/// What insurance the care falls under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cover {
    /// Maladie, maternity or AT/MP.
    pub kind: CoverKind,
    /// The acts are care for the beneficiary's ALD.
    pub ald: bool,
    /// The beneficiary has the complémentaire santé solidaire.
    pub css: bool,
    /// AT/MP details, with kind `at_mp`.
    #[serde(default)]
    pub at_mp: Option<AtMp>,
}

/// Whether, and how, the patient vouched for the sheet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Vitale card present and signed the proof of presence.
    Secured,
    /// No Vitale card: a paper sheet must follow.
    Degraded,
    /// The Vitale app (ApCV) vouched for the patient's presence with a token
    /// ([`CareSheet::app_presence`]).
    App,
}

/// Where the rights a sheet was priced on came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RightsSource {
    /// The Vitale card's rights (with [`RightsOrigin::fallback`]: used because an online
    /// lookup could not be made).
    Card,
    /// An online rights answer (ADRi), signed by the beneficiary's AMO organism.
    Online,
    /// The rights the Vitale app carried at its last update.
    App,
}

impl RightsSource {
    /// Its name in JSON and in the queue.
    pub fn as_str(self) -> &'static str {
        match self {
            RightsSource::Card => "card",
            RightsSource::Online => "online",
            RightsSource::App => "app",
        }
    }
}

/// Where the rights of a version 3 sheet came from, and when they were read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsOrigin {
    /// Card, online or app.
    pub source: RightsSource,
    /// When those rights were read (card, app) or answered (online): `YYYYMMDDHHMMSSZ`.
    pub read_at: String,
    /// Online: hex SHA-256 of the signed answer's DER (`SignedReturn`), which ties the sheet to
    /// the answer kept in the queue.
    #[serde(default)]
    pub answer_digest: Option<String>,
    /// Why an online lookup was not used when one was due (the card's rights used offline).
    #[serde(default)]
    pub fallback: Option<String>,
}

/// The Vitale app's proof that the patient was there: its presence token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppPresence {
    /// Hex of the token's DER (`AppToken`).
    pub token: String,
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
///
/// Its JSON also shows `payee_billing_number` ([`CareSheet::payee_billing_number`], after
/// `replaced`) and `rights_source` ([`CareSheet::rights_source`], after `tables_version`):
/// derived, not in the DER, ignored when read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CareSheet {
    /// Sheet number, unique per practitioner.
    pub number: u64,
    /// Creation time, `YYYYMMDDHHMMSSZ` (UTC).
    pub created_at: String,
    /// Who made it.
    pub practitioner: SheetPractitioner,
    /// For a remplaçant: the practitioner replaced.
    #[serde(default)]
    pub replaced: Option<ReplacedPractitioner>,
    /// For whom.
    pub beneficiary: SheetBeneficiary,
    /// The acts.
    pub acts: Vec<Act>,
    /// Care path.
    pub care_path: CarePath,
    /// Cover.
    pub cover: Cover,
    /// Tiers payant.
    pub tiers_payant: TiersPayant,
    /// The amounts.
    pub amounts: Amounts,
    /// Secured, degraded or app.
    pub mode: Mode,
    /// Why degraded (no Vitale card, card unreadable …); absent in secured mode.
    #[serde(default)]
    pub degraded_reason: Option<String>,
    /// Last day to send the sheet, `YYYYMMDD`.
    pub deadline: String,
    /// Version of the tariff tables the sheet was priced with.
    pub tables_version: String,
    /// The Vitale card's proof of presence (secured mode only).
    pub presence: Option<Presence>,
    /// Where its rights came from; `None` in a version 2 sheet: the rights read from the
    /// Vitale card for it (secured mode) or typed (degraded mode).
    #[serde(default)]
    pub rights: Option<RightsOrigin>,
    /// The Vitale app's token (app mode only).
    #[serde(default)]
    pub app_presence: Option<AppPresence>,
}

impl CareSheet {
    /// The billing number the sheet is paid on: the replaced practitioner's on a remplaçant's
    /// sheet (the titular's, which `build` checks is the remplacement situation's own
    /// `practitioner.billing_number`), else the practitioner's.
    pub fn payee_billing_number(&self) -> &str {
        self.replaced
            .as_ref()
            .map_or(&self.practitioner.billing_number, |r| &r.billing_number)
    }

    /// Where its rights came from, in every version: [`RightsOrigin::source`] when recorded,
    /// else `"card"` (secured mode) or `"typed"` (degraded mode).
    pub fn rights_source(&self) -> &'static str {
        match (&self.rights, self.mode) {
            (Some(r), _) => r.source.as_str(),
            (None, Mode::Degraded) => "typed",
            (None, _) => "card",
        }
    }

    /// The version its DER is written in: [`SHEET_VERSION_RIGHTS`] when it records its rights'
    /// origin or the app vouched for it, else [`SHEET_VERSION`].
    pub fn der_version(&self) -> u32 {
        if self.rights.is_some() || self.mode == Mode::App || self.app_presence.is_some() {
            SHEET_VERSION_RIGHTS
        } else {
            SHEET_VERSION
        }
    }
}

impl Serialize for CareSheet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("CareSheet", 20)?;
        st.serialize_field("number", &self.number)?;
        st.serialize_field("created_at", &self.created_at)?;
        st.serialize_field("practitioner", &self.practitioner)?;
        st.serialize_field("replaced", &self.replaced)?;
        st.serialize_field("payee_billing_number", self.payee_billing_number())?;
        st.serialize_field("beneficiary", &self.beneficiary)?;
        st.serialize_field("acts", &self.acts)?;
        st.serialize_field("care_path", &self.care_path)?;
        st.serialize_field("cover", &self.cover)?;
        st.serialize_field("tiers_payant", &self.tiers_payant)?;
        st.serialize_field("amounts", &self.amounts)?;
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("degraded_reason", &self.degraded_reason)?;
        st.serialize_field("deadline", &self.deadline)?;
        st.serialize_field("tables_version", &self.tables_version)?;
        st.serialize_field("rights_source", self.rights_source())?;
        st.serialize_field("rights", &self.rights)?;
        st.serialize_field("presence", &self.presence)?;
        st.serialize_field("app_presence", &self.app_presence)?;
        st.end()
    }
}

impl CareSheet {
    /// A realistic sheet — Dr MARTIN's G consultation of 22 November 2026 for Jean DUPONT, tiers
    /// payant AMO, degraded mode — for tests, benchmarks and simulators.
    pub fn sample(number: u64) -> CareSheet {
        CareSheet {
            number,
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
            replaced: None,
            acts: vec![Act {
                code: "G".into(),
                coefficient: 100,
                quantity: 1,
                date: "20261122".into(),
                modifiers: vec![],
                prescriber: None,
                base_cents: 3000,
                excess_cents: 0,
                rate: 70,
                amo_cents: 2100,
                pf_cents: 200,
            }],
            care_path: CarePath::Treating,
            cover: Cover {
                kind: CoverKind::Maladie,
                ald: false,
                css: false,
                at_mp: None,
            },
            tiers_payant: TiersPayant {
                amo: true,
                amc: false,
                amc_number: None,
            },
            amounts: Amounts {
                total_cents: 3000,
                base_cents: 3000,
                excess_cents: 0,
                amo_cents: 1900,
                pf_cents: 200,
                amc_cents: 0,
                patient_cents: 1100,
                due_cents: 1100,
            },
            mode: Mode::Degraded,
            degraded_reason: Some("no Vitale card".into()),
            deadline: "20261202".into(),
            tables_version: "2026.11-1".into(),
            presence: None,
            rights: None,
            app_presence: None,
        }
    }

    /// Checks the Vitale card's proof of presence: present in secured mode, absent in degraded,
    /// signature valid. In app mode it checks only that the token is there and no card proof:
    /// the token itself is verified by `crate::app`, against a trust store.
    pub fn verify_presence(&self) -> Result<(), DerError> {
        match (self.mode, &self.app_presence) {
            (Mode::App, None) => {
                return Err(DerError::field(
                    "app_presence",
                    "app sheet without the app's token",
                ))
            }
            (Mode::Secured | Mode::Degraded, Some(_)) => {
                return Err(DerError::field(
                    "app_presence",
                    "only an app sheet carries the app's token",
                ))
            }
            _ => {}
        }
        match (self.mode, &self.presence) {
            (Mode::App, None) => Ok(()),
            (Mode::App, Some(_)) => Err(DerError::field(
                "presence",
                "app sheet carries a card proof",
            )),
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
mod tests;
