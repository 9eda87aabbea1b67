//! The care sheet's DER codec, per `formats/asn1/fsed.asn` (`CareSheet`): version 2, or
//! version 3 whose body ends with the rights' origin and whose presence may be the Vitale
//! app's token. A sheet is written in the lowest version that holds it, and a decoded sheet is
//! written again and compared byte for byte.

use asn1_rs::{DerSequence, FromDer, Tagged, ToDerSequence};
use sha2::{Digest, Sha256};

use super::{
    Act, AppPresence, AtMp, CarePath, CareSheet, Cover, CoverKind, Mode, Prescriber, Presence,
    ReplacedPractitioner, RightsOrigin, RightsSource, SheetBeneficiary, SheetPractitioner,
    SHEET_VERSION, SHEET_VERSION_RIGHTS,
};
use crate::care::{Amounts, TiersPayant};
use crate::der::{bytes_n, octets, DerBool, DerError, Writer};

/// A version 3 sheet's rights' origin, with its answer digest's bytes; `None` in version 2.
type V3Fields<'a> = Option<(&'a RightsOrigin, Option<[u8; 32]>)>;

/// The context tag of the app's alternative of `Presence` (`app [1] OCTET STRING`,
/// primitive).
const APP_PRESENCE_TAG: u8 = 0x81;

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

/// `RightsOrigin` of `fsed.asn`: the last field of a version 3 body.
#[derive(DerSequence, ToDerSequence)]
struct RightsDer<'a> {
    source: u32,
    read_at: String,
    answer_digest: Vec<asn1_rs::OctetString<'a>>,
    fallback: Vec<String>,
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
    fn write_body(&self, w: &mut Writer, rights: V3Fields<'_>) {
        let p = &self.practitioner;
        let b = &self.beneficiary;
        let a = &self.amounts;
        w.seq(|w| {
            w.uint(u64::from(self.der_version()));
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
            write_acts(w, &self.acts);
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
                Mode::App => 2,
            });
            w.seq(|w| self.degraded_reason.iter().for_each(|r| w.utf8(r)));
            w.utf8(&self.deadline);
            w.utf8(&self.tables_version);
            if let Some((r, digest)) = rights {
                write_rights(w, r, digest);
            }
        });
    }

    /// The sheet's version 3 fields, checked: in version 3 the rights' origin (with its answer
    /// digest's bytes); an app sheet records its rights' origin and carries the app's token and
    /// no card proof.
    fn v3_fields(&self) -> Result<V3Fields<'_>, DerError> {
        if self.mode == Mode::App && (self.app_presence.is_none() || self.presence.is_some()) {
            return Err(DerError::field(
                "app_presence",
                "an app sheet carries the app's token and no card proof",
            ));
        }
        if self.mode != Mode::App && self.app_presence.is_some() {
            return Err(DerError::field(
                "app_presence",
                "only an app sheet carries the app's token",
            ));
        }
        if self.der_version() == SHEET_VERSION {
            return Ok(None);
        }
        let r = self.rights.as_ref().ok_or_else(|| {
            DerError::field("rights", "an app sheet records where its rights came from")
        })?;
        let digest = match &r.answer_digest {
            None => None,
            Some(h) => {
                let mut d = [0u8; 32];
                hex::decode_to_slice(h, &mut d)
                    .map_err(|_| DerError::field("rights.answer_digest", "not 32 bytes of hex"))?;
                Some(d)
            }
        };
        Ok(Some((r, digest)))
    }

    /// DER of the sheet body (everything but the proof of presence).
    pub fn body_to_der(&self) -> Result<Vec<u8>, DerError> {
        let rights = self.v3_fields()?;
        let mut w = Writer::with_capacity(512);
        self.write_body(&mut w, rights);
        Ok(w.finish())
    }

    /// The challenge the Vitale card signs: SHA-256 of the DER body.
    pub fn presence_challenge(&self) -> Result<[u8; 32], DerError> {
        Ok(Sha256::digest(self.body_to_der()?).into())
    }

    /// DER of the whole sheet: `SEQUENCE { body, presence SEQUENCE SIZE(0..1) OF Presence }`.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        let rights = self.v3_fields()?;
        let token = match &self.app_presence {
            None => None,
            Some(a) => Some(
                hex::decode(&a.token)
                    .map_err(|_| DerError::field("app_presence.token", "not hex"))?,
            ),
        };
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
            self.write_body(w, rights);
            w.seq(|w| {
                if let Some((serial, key, sig)) = &proof {
                    w.seq(|w| {
                        w.utf8(serial);
                        w.octets(key);
                        w.octets(sig);
                    });
                }
                if let Some(token) = &token {
                    w.implicit(APP_PRESENCE_TAG, token);
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
        let (inner, body, rights) = body_from_der(inner)?;
        let (inner, presence_seq) = asn1_rs::Sequence::from_der(inner)?;
        if !inner.is_empty() {
            return Err(DerError::field("sheet", "trailing fields"));
        }
        let (proofs, app_presence) = presence_from_der(presence_seq.content.as_ref())?;
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
            mode: match (body.mode, body.version) {
                (0, _) => Mode::Secured,
                (1, _) => Mode::Degraded,
                (2, SHEET_VERSION_RIGHTS) => Mode::App,
                _ => return Err(DerError::field("mode", "unknown mode")),
            },
            degraded_reason: at_most_one(body.degraded_reason, "degraded_reason")?,
            deadline: body.deadline,
            tables_version: body.tables_version,
            presence,
            rights,
            app_presence,
        };
        crate::der::require_canonical(bytes, &sheet.to_der()?, "sheet")?;
        Ok(sheet)
    }
}

/// Writes the body's acts: `SEQUENCE SIZE (1..MAX) OF Act`.
fn write_acts(w: &mut Writer, acts: &[Act]) {
    w.seq(|w| {
        for x in acts {
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
}

/// Writes a version 3 body's last field: `RightsOrigin`.
fn write_rights(w: &mut Writer, r: &RightsOrigin, digest: Option<[u8; 32]>) {
    w.seq(|w| {
        w.uint(match r.source {
            RightsSource::Card => 0,
            RightsSource::Online => 1,
            RightsSource::App => 2,
        });
        w.utf8(&r.read_at);
        w.seq(|w| digest.iter().for_each(|d| w.octets(d)));
        w.seq(|w| r.fallback.iter().for_each(|f| w.utf8(f)));
    });
}

/// The body at the start of `inner`, its version's: version 2 as it is; version 3 with its
/// trailing `RightsOrigin` taken off and decoded. Returns what follows the body.
fn body_from_der(inner: &[u8]) -> Result<(&[u8], BodyDer, Option<RightsOrigin>), DerError> {
    let (rest, any) = asn1_rs::Any::from_der(inner)?;
    let content = any.data;
    // The version is the body's first element.
    let (_, version) = u32::from_der(content)?;
    match version {
        SHEET_VERSION => {
            let (_, body) = BodyDer::from_der(inner)?;
            Ok((rest, body, None))
        }
        SHEET_VERSION_RIGHTS => {
            // The elements' ends, to find the last one: the rights' origin.
            let mut at = content;
            let mut last = 0;
            while !at.is_empty() {
                let (next, _) = asn1_rs::Any::from_der(at)?;
                last = content.len() - at.len();
                at = next;
            }
            let (head, tail) = content.split_at(last);
            let rebuilt = crate::der::sequence(head);
            let (_, body) = BodyDer::from_der(&rebuilt)?;
            let (after, r) = RightsDer::from_der(tail)?;
            if !after.is_empty() {
                return Err(DerError::field("rights", "trailing bytes"));
            }
            let digest = at_most_one(r.answer_digest, "rights.answer_digest")?
                .map(|d| bytes_n::<32>(octets(&d), "rights.answer_digest").map(hex::encode))
                .transpose()?;
            let rights = RightsOrigin {
                source: match r.source {
                    0 => RightsSource::Card,
                    1 => RightsSource::Online,
                    2 => RightsSource::App,
                    _ => return Err(DerError::field("rights.source", "unknown source")),
                },
                read_at: r.read_at,
                answer_digest: digest,
                fallback: at_most_one(r.fallback, "rights.fallback")?,
            };
            Ok((rest, body, Some(rights)))
        }
        _ => Err(DerError::field("version", "unsupported sheet version")),
    }
}

/// The sheet's presence (`SEQUENCE SIZE (0..1) OF Presence`), from its content: the card's
/// proof or the app's token.
fn presence_from_der(
    content: &[u8],
) -> Result<(Vec<PresenceDer<'_>>, Option<AppPresence>), DerError> {
    match content.first() {
        None => Ok((Vec::new(), None)),
        Some(&APP_PRESENCE_TAG) => {
            let (rest, any) = asn1_rs::Any::from_der(content)?;
            if !rest.is_empty() {
                return Err(DerError::field("presence", "more than one element"));
            }
            Ok((
                Vec::new(),
                Some(AppPresence {
                    token: hex::encode(any.data),
                }),
            ))
        }
        Some(_) => {
            let (rest, proof) = PresenceDer::from_der(content)?;
            if !rest.is_empty() {
                return Err(DerError::field("presence", "more than one element"));
            }
            Ok((vec![proof], None))
        }
    }
}
