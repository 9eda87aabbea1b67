//! The care sheet (FSE): its model, its JSON rendering (serde) and its DER
//! codec per `formats/asn1/fsed.asn` (`CareSheet`).
//!
//! The sheet splits in a body — everything priced and signed — and the
//! patient's proof of presence: the Vitale card's signature over
//! SHA-256(DER(body)), which [`CareSheet::presence_challenge`] computes.

use asn1_rs::{DerSequence, FromDer, Tagged, ToDerSequence};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::der::{bytes_n, octets, DerBool, DerError, Writer};

/// Version of the `CareSheet` encoding.
pub const SHEET_VERSION: u32 = 2;

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
///
/// Its JSON also shows `payee_billing_number` ([`CareSheet::payee_billing_number`], after
/// `replaced`): derived, not in the DER, ignored when read back.
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
    /// Secured or degraded.
    pub mode: Mode,
    /// Why degraded (no Vitale card, card unreadable …); absent in secured mode.
    #[serde(default)]
    pub degraded_reason: Option<String>,
    /// Last day to send the sheet, `YYYYMMDD`.
    pub deadline: String,
    /// Version of the tariff tables the sheet was priced with.
    pub tables_version: String,
    /// The proof of presence (secured mode only).
    pub presence: Option<Presence>,
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
}

impl Serialize for CareSheet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("CareSheet", 17)?;
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
        st.serialize_field("presence", &self.presence)?;
        st.end()
    }
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
struct ReplacedDer {
    national_id: String,
    surname: String,
    given_name: String,
    billing_number: String,
}

/// `Beneficiary` of `fsed.asn`, shared by the sheet and the DRE codecs.
#[derive(DerSequence, ToDerSequence)]
pub(crate) struct BeneficiaryDer {
    nir: String,
    surname: String,
    given_name: String,
    birth_date: String,
    rank: u32,
    organism: String,
}

impl BeneficiaryDer {
    /// From the model.
    pub(crate) fn from_model(b: &SheetBeneficiary) -> BeneficiaryDer {
        BeneficiaryDer {
            nir: b.nir.clone(),
            surname: b.surname.clone(),
            given_name: b.given_name.clone(),
            birth_date: b.birth_date.clone(),
            rank: u32::from(b.rank),
            organism: b.organism.clone(),
        }
    }

    /// To the model, refusing a rank out of range.
    pub(crate) fn into_model(self) -> Result<SheetBeneficiary, DerError> {
        Ok(SheetBeneficiary {
            nir: self.nir,
            surname: self.surname,
            given_name: self.given_name,
            birth_date: self.birth_date,
            rank: u8::try_from(self.rank)
                .map_err(|_| DerError::field("beneficiary.rank", "out of range"))?,
            organism: self.organism,
        })
    }
}

#[derive(DerSequence, ToDerSequence)]
struct PrescriberDer {
    national_id: String,
    date: String,
}

#[derive(DerSequence, ToDerSequence)]
struct ActDer {
    code: String,
    coefficient: u32,
    quantity: u32,
    date: String,
    modifiers: Vec<String>,
    prescriber: Vec<PrescriberDer>,
    base_cents: u64,
    excess_cents: u64,
    rate: u32,
    amo_cents: u64,
    pf_cents: u64,
}

#[derive(DerSequence, ToDerSequence)]
struct AtMpDer {
    date: String,
    number: String,
}

#[derive(DerSequence, ToDerSequence)]
struct CoverDer {
    kind: u32,
    ald: DerBool,
    css: DerBool,
    at_mp: Vec<AtMpDer>,
}

#[derive(DerSequence, ToDerSequence)]
struct TiersPayantDer {
    amo: DerBool,
    amc: DerBool,
    amc_number: Vec<String>,
}

#[derive(DerSequence, ToDerSequence)]
struct AmountsDer {
    total_cents: u64,
    base_cents: u64,
    excess_cents: u64,
    amo_cents: u64,
    pf_cents: u64,
    amc_cents: u64,
    patient_cents: u64,
    due_cents: u64,
}

#[derive(DerSequence, ToDerSequence)]
struct BodyDer {
    version: u32,
    number: u64,
    created_at: String,
    practitioner: PractitionerDer,
    replaced: Vec<ReplacedDer>,
    beneficiary: BeneficiaryDer,
    acts: Vec<ActDer>,
    care_path: u32,
    cover: CoverDer,
    tiers_payant: TiersPayantDer,
    amounts: AmountsDer,
    mode: u32,
    degraded_reason: Vec<String>,
    deadline: String,
    tables_version: String,
}

#[derive(DerSequence, ToDerSequence)]
struct PresenceDer<'a> {
    vitale_serial: String,
    public_key: asn1_rs::OctetString<'a>,
    signature: asn1_rs::OctetString<'a>,
}

fn care_path_code(c: CarePath) -> u32 {
    match c {
        CarePath::Treating => 0,
        CarePath::DirectAccess => 1,
        CarePath::Emergency => 2,
        CarePath::OutOfPath => 3,
        CarePath::NotApplicable => 4,
    }
}

fn care_path_from(c: u32) -> Result<CarePath, DerError> {
    Ok(match c {
        0 => CarePath::Treating,
        1 => CarePath::DirectAccess,
        2 => CarePath::Emergency,
        3 => CarePath::OutOfPath,
        4 => CarePath::NotApplicable,
        _ => return Err(DerError::field("carePath", "unknown care path")),
    })
}

fn cover_code(c: CoverKind) -> u32 {
    match c {
        CoverKind::Maladie => 0,
        CoverKind::Maternite => 1,
        CoverKind::AtMp => 2,
    }
}

fn cover_from(c: u32) -> Result<CoverKind, DerError> {
    Ok(match c {
        0 => CoverKind::Maladie,
        1 => CoverKind::Maternite,
        2 => CoverKind::AtMp,
        _ => return Err(DerError::field("cover.kind", "unknown cover")),
    })
}

/// The acts of a decoded sheet body, each rate within `u8` and at most one prescriber.
fn acts_from_der(acts: Vec<ActDer>) -> Result<Vec<Act>, DerError> {
    let small = |v: u32, name: &'static str| {
        u8::try_from(v).map_err(|_| DerError::field(name, "out of range"))
    };
    let mut out = Vec::with_capacity(acts.len());
    for a in acts {
        out.push(Act {
            code: a.code,
            coefficient: a.coefficient,
            quantity: a.quantity,
            date: a.date,
            modifiers: a.modifiers,
            prescriber: at_most_one(a.prescriber, "acts.prescriber")?.map(|p| Prescriber {
                national_id: p.national_id,
                date: p.date,
            }),
            base_cents: a.base_cents,
            excess_cents: a.excess_cents,
            rate: small(a.rate, "acts.rate")?,
            amo_cents: a.amo_cents,
            pf_cents: a.pf_cents,
        });
    }
    Ok(out)
}

/// At most one element: the `SEQUENCE SIZE (0..1) OF` encoding of an optional field.
fn at_most_one<T>(v: Vec<T>, field: &'static str) -> Result<Option<T>, DerError> {
    let mut it = v.into_iter();
    let first = it.next();
    if it.next().is_some() {
        return Err(DerError::field(field, "more than one element"));
    }
    Ok(first)
}

impl CareSheet {
    /// Writes the sheet body (everything but the proof of presence): `CareSheetBody`.
    fn write_body(&self, w: &mut Writer) {
        let p = &self.practitioner;
        let b = &self.beneficiary;
        let a = &self.amounts;
        w.seq(|w| {
            w.uint(u64::from(SHEET_VERSION));
            w.uint(self.number);
            w.utf8(&self.created_at);
            w.seq(|w| {
                w.utf8(&p.national_id);
                w.utf8(&p.surname);
                w.utf8(&p.given_name);
                w.utf8(&p.profession);
                w.utf8(&p.specialty);
                w.utf8(&p.billing_number);
                w.uint(u64::from(p.sector));
                w.utf8(&p.cps_serial);
            });
            w.seq(|w| {
                if let Some(r) = &self.replaced {
                    w.seq(|w| {
                        w.utf8(&r.national_id);
                        w.utf8(&r.surname);
                        w.utf8(&r.given_name);
                        w.utf8(&r.billing_number);
                    });
                }
            });
            w.seq(|w| {
                w.utf8(&b.nir);
                w.utf8(&b.surname);
                w.utf8(&b.given_name);
                w.utf8(&b.birth_date);
                w.uint(u64::from(b.rank));
                w.utf8(&b.organism);
            });
            w.seq(|w| {
                for x in &self.acts {
                    w.seq(|w| {
                        w.utf8(&x.code);
                        w.uint(u64::from(x.coefficient));
                        w.uint(u64::from(x.quantity));
                        w.utf8(&x.date);
                        w.seq(|w| x.modifiers.iter().for_each(|m| w.utf8(m)));
                        w.seq(|w| {
                            if let Some(p) = &x.prescriber {
                                w.seq(|w| {
                                    w.utf8(&p.national_id);
                                    w.utf8(&p.date);
                                });
                            }
                        });
                        w.uint(x.base_cents);
                        w.uint(x.excess_cents);
                        w.uint(u64::from(x.rate));
                        w.uint(x.amo_cents);
                        w.uint(x.pf_cents);
                    });
                }
            });
            w.uint(u64::from(care_path_code(self.care_path)));
            w.seq(|w| {
                w.uint(u64::from(cover_code(self.cover.kind)));
                w.boolean(self.cover.ald);
                w.boolean(self.cover.css);
                w.seq(|w| {
                    if let Some(x) = &self.cover.at_mp {
                        w.seq(|w| {
                            w.utf8(&x.date);
                            w.utf8(&x.number);
                        });
                    }
                });
            });
            w.seq(|w| {
                w.boolean(self.tiers_payant.amo);
                w.boolean(self.tiers_payant.amc);
                w.seq(|w| self.tiers_payant.amc_number.iter().for_each(|n| w.utf8(n)));
            });
            w.seq(|w| {
                for v in [
                    a.total_cents,
                    a.base_cents,
                    a.excess_cents,
                    a.amo_cents,
                    a.pf_cents,
                    a.amc_cents,
                    a.patient_cents,
                    a.due_cents,
                ] {
                    w.uint(v);
                }
            });
            w.uint(match self.mode {
                Mode::Secured => 0,
                Mode::Degraded => 1,
            });
            w.seq(|w| self.degraded_reason.iter().for_each(|r| w.utf8(r)));
            w.utf8(&self.deadline);
            w.utf8(&self.tables_version);
        });
    }

    /// DER of the sheet body (everything but the proof of presence).
    pub fn body_to_der(&self) -> Result<Vec<u8>, DerError> {
        let mut w = Writer::with_capacity(512);
        self.write_body(&mut w);
        Ok(w.finish())
    }

    /// The challenge the Vitale card signs: SHA-256 of the DER body.
    pub fn presence_challenge(&self) -> Result<[u8; 32], DerError> {
        Ok(Sha256::digest(self.body_to_der()?).into())
    }

    /// DER of the whole sheet: `SEQUENCE { body, presence SEQUENCE SIZE(0..1) OF PresenceProof }`.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let proof = match &self.presence {
            None => None,
            Some(p) => {
                let mut key = [0u8; 32];
                hex::decode_to_slice(&p.public_key, &mut key)
                    .map_err(|_| DerError::field("presence.public_key", "not 32 bytes of hex"))?;
                let mut sig = [0u8; 64];
                hex::decode_to_slice(&p.signature, &mut sig)
                    .map_err(|_| DerError::field("presence.signature", "not 64 bytes of hex"))?;
                Some((p.vitale_serial.as_str(), key, sig))
            }
        };
        let mut w = Writer::with_capacity(640);
        w.seq(|w| {
            self.write_body(w);
            w.seq(|w| {
                if let Some((serial, key, sig)) = &proof {
                    w.seq(|w| {
                        w.utf8(serial);
                        w.octets(key);
                        w.octets(sig);
                    });
                }
            });
        });
        Ok(w.finish())
    }

    /// Decodes a sheet from DER, refusing trailing bytes, unknown versions and out-of-range fields.
    pub fn from_der(bytes: &[u8]) -> Result<CareSheet, DerError> {
        crate::der::check_structure(bytes)?;
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
        let presence = match at_most_one(proofs, "presence")? {
            None => None,
            Some(p) => Some(Presence {
                vitale_serial: p.vitale_serial.clone(),
                public_key: hex::encode(bytes_n::<32>(
                    octets(&p.public_key),
                    "presence.public_key",
                )?),
                signature: hex::encode(bytes_n::<64>(octets(&p.signature), "presence.signature")?),
            }),
        };
        let acts = acts_from_der(body.acts)?;
        if acts.is_empty() {
            return Err(DerError::field("acts", "a sheet has at least one act"));
        }
        let sheet = CareSheet {
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
            replaced: at_most_one(body.replaced, "replaced")?.map(|r| ReplacedPractitioner {
                national_id: r.national_id,
                surname: r.surname,
                given_name: r.given_name,
                billing_number: r.billing_number,
            }),
            beneficiary: body.beneficiary.into_model()?,
            acts,
            care_path: care_path_from(body.care_path)?,
            cover: Cover {
                kind: cover_from(body.cover.kind)?,
                ald: body.cover.ald.0,
                css: body.cover.css.0,
                at_mp: at_most_one(body.cover.at_mp, "cover.at_mp")?.map(|x| AtMp {
                    date: x.date,
                    number: x.number,
                }),
            },
            tiers_payant: TiersPayant {
                amo: body.tiers_payant.amo.0,
                amc: body.tiers_payant.amc.0,
                amc_number: at_most_one(body.tiers_payant.amc_number, "tiers_payant.amc_number")?,
            },
            amounts: Amounts {
                total_cents: body.amounts.total_cents,
                base_cents: body.amounts.base_cents,
                excess_cents: body.amounts.excess_cents,
                amo_cents: body.amounts.amo_cents,
                pf_cents: body.amounts.pf_cents,
                amc_cents: body.amounts.amc_cents,
                patient_cents: body.amounts.patient_cents,
                due_cents: body.amounts.due_cents,
            },
            mode: match body.mode {
                0 => Mode::Secured,
                1 => Mode::Degraded,
                _ => return Err(DerError::field("mode", "unknown mode")),
            },
            degraded_reason: at_most_one(body.degraded_reason, "degraded_reason")?,
            deadline: body.deadline,
            tables_version: body.tables_version,
            presence,
        };
        crate::der::require_canonical(bytes, &sheet.to_der()?, "sheet")?;
        Ok(sheet)
    }

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
        }
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
mod tests;
