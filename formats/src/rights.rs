//! Rights online (ADRi): a rights request for one beneficiary (NIR, birth date, rank), the
//! insurer's answer (the AMO organism, the rights period, the coverage periods, the AMC), the
//! checks an answer passes before fsed believes it, and the decision to ask at all.
//! Per `formats/asn1/fsed.asn` (`RightsRequest`, `RightsAnswer`).
//!
//! The answer travels as a [`SignedReturn`] of kind `rights(2)`, signed by the insurer of the
//! organism it names ([`check_answer`]). A found answer becomes the card-shaped rights
//! ([`RightsAnswer::overlay`]), so pricing reads online rights exactly as it reads a card's.

use asn1_rs::{DerSequence, FromDer, Tagged, ToDer, ToDerSequence};
use chrono::{NaiveDate, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::ack::{ReturnAuthError, ReturnContent, SignedReturn};
use crate::cards::{Amc, Coverage, CoverageKind, Organism, VitaleData};
use crate::der::{DerBool, DerError};
use crate::pki::TrustStore;

/// Version of the rights request and answer encodings.
pub const RIGHTS_VERSION: u32 = 1;

/// A rights request: who asks, for which beneficiary, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsRequest {
    /// Unique id of the request, echoed by the answer (also the AMQP correlation id and the
    /// spool file stem).
    pub request_id: String,
    /// NIR with its key (15 characters).
    pub nir: String,
    /// Birth date `YYYYMMDD`.
    pub birth_date: String,
    /// Birth rank.
    pub rank: u8,
    /// The practitioner asking (RPPS), or empty when none is known.
    pub practitioner_id: String,
    /// When it was asked, `YYYYMMDDHHMMSSZ`.
    pub asked_at: String,
}

/// Whether the insurer knows the beneficiary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RightsStatus {
    /// Known: the answer carries the rights of the day.
    Found,
    /// Not known to this insurer: no rights in the answer.
    Unknown,
}

/// The insurer's answer to a [`RightsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsAnswer {
    /// The request answered.
    pub request_id: String,
    /// Found or unknown.
    pub status: RightsStatus,
    /// Echo of the request's NIR.
    pub nir: String,
    /// Echo of the request's birth date.
    pub birth_date: String,
    /// Echo of the request's rank.
    pub rank: u8,
    /// The answering AMO organism, 9 digits (régime, caisse, centre): the signer's code.
    pub organism: String,
    /// Surname (empty when unknown).
    pub surname: String,
    /// Given name (empty when unknown).
    pub given_name: String,
    /// First day of open AMO rights `YYYYMMDD` (empty when unknown).
    pub rights_from: String,
    /// Last day of open AMO rights `YYYYMMDD` (empty when unknown).
    pub rights_until: String,
    /// Coverage periods (ALD, maternity, AT/MP, CSS).
    pub coverages: Vec<Coverage>,
    /// The supplementary insurer, when there is one.
    pub amc: Option<Amc>,
    /// When the insurer answered, `YYYYMMDDHHMMSSZ`.
    pub answered_at: String,
}

#[derive(DerSequence, ToDerSequence)]
struct RequestDer {
    version: u32,
    request_id: String,
    nir: String,
    birth_date: String,
    rank: u32,
    practitioner_id: String,
    asked_at: String,
}

#[derive(DerSequence, ToDerSequence)]
struct CoverageDer {
    kind: u32,
    from: String,
    until: String,
}

#[derive(DerSequence, ToDerSequence)]
struct AmcDer {
    number: String,
    name: String,
    direct: DerBool,
    tiers_payant: DerBool,
    from: String,
    until: String,
}

#[derive(DerSequence, ToDerSequence)]
struct AnswerDer {
    version: u32,
    request_id: String,
    status: u32,
    nir: String,
    birth_date: String,
    rank: u32,
    organism: String,
    surname: String,
    given_name: String,
    rights_from: String,
    rights_until: String,
    coverages: Vec<CoverageDer>,
    amc: Vec<AmcDer>,
    answered_at: String,
}

fn kind_code(k: CoverageKind) -> u32 {
    match k {
        CoverageKind::Ald => 1,
        CoverageKind::Maternite => 2,
        CoverageKind::AtMp => 3,
        CoverageKind::Css => 4,
    }
}

fn kind_of(c: u32) -> Result<CoverageKind, DerError> {
    Ok(match c {
        1 => CoverageKind::Ald,
        2 => CoverageKind::Maternite,
        3 => CoverageKind::AtMp,
        4 => CoverageKind::Css,
        _ => return Err(DerError::field("coverages.kind", "unknown coverage kind")),
    })
}

fn rank_of(r: u32) -> Result<u8, DerError> {
    u8::try_from(r)
        .ok()
        .filter(|r| *r >= 1)
        .ok_or_else(|| DerError::field("rank", "not 1 to 255"))
}

impl RightsRequest {
    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        Ok(RequestDer {
            version: RIGHTS_VERSION,
            request_id: self.request_id.clone(),
            nir: self.nir.clone(),
            birth_date: self.birth_date.clone(),
            rank: u32::from(self.rank),
            practitioner_id: self.practitioner_id.clone(),
            asked_at: self.asked_at.clone(),
        }
        .to_der_vec()?)
    }

    /// DER decoding, strict (canonical DER only).
    pub fn from_der(bytes: &[u8]) -> Result<RightsRequest, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, r) = RequestDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("rights_request", "trailing bytes"));
        }
        if r.version != RIGHTS_VERSION {
            return Err(DerError::field(
                "version",
                "unsupported rights request version",
            ));
        }
        if r.request_id.is_empty() {
            return Err(DerError::field("request_id", "empty"));
        }
        let req = RightsRequest {
            request_id: r.request_id,
            nir: r.nir,
            birth_date: r.birth_date,
            rank: rank_of(r.rank)?,
            practitioner_id: r.practitioner_id,
            asked_at: r.asked_at,
        };
        crate::der::require_canonical(bytes, &req.to_der()?, "rights_request")?;
        Ok(req)
    }
}

impl RightsAnswer {
    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        Ok(AnswerDer {
            version: RIGHTS_VERSION,
            request_id: self.request_id.clone(),
            status: match self.status {
                RightsStatus::Found => 0,
                RightsStatus::Unknown => 1,
            },
            nir: self.nir.clone(),
            birth_date: self.birth_date.clone(),
            rank: u32::from(self.rank),
            organism: self.organism.clone(),
            surname: self.surname.clone(),
            given_name: self.given_name.clone(),
            rights_from: self.rights_from.clone(),
            rights_until: self.rights_until.clone(),
            coverages: self
                .coverages
                .iter()
                .map(|c| CoverageDer {
                    kind: kind_code(c.kind),
                    from: c.from.clone(),
                    until: c.until.clone(),
                })
                .collect(),
            amc: self
                .amc
                .iter()
                .map(|a| AmcDer {
                    number: a.number.clone(),
                    name: a.name.clone(),
                    direct: DerBool(a.direct),
                    tiers_payant: DerBool(a.tiers_payant),
                    from: a.from.clone(),
                    until: a.until.clone(),
                })
                .collect(),
            answered_at: self.answered_at.clone(),
        }
        .to_der_vec()?)
    }

    /// DER decoding, strict: canonical DER only, a 9-digit organism, at most one AMC, and a
    /// found answer with its rights period (an unknown one with none).
    pub fn from_der(bytes: &[u8]) -> Result<RightsAnswer, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, a) = AnswerDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("rights_answer", "trailing bytes"));
        }
        if a.version != RIGHTS_VERSION {
            return Err(DerError::field(
                "version",
                "unsupported rights answer version",
            ));
        }
        let status = match a.status {
            0 => RightsStatus::Found,
            1 => RightsStatus::Unknown,
            _ => return Err(DerError::field("status", "unknown status")),
        };
        if a.organism.len() != 9 || !a.organism.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DerError::field("organism", "not 9 digits"));
        }
        if a.amc.len() > 1 {
            return Err(DerError::field("amc", "more than one AMC"));
        }
        let dated = |d: &str| d.len() == 8 && NaiveDate::parse_from_str(d, "%Y%m%d").is_ok();
        match status {
            RightsStatus::Found if !dated(&a.rights_from) || !dated(&a.rights_until) => {
                return Err(DerError::field(
                    "rights_from",
                    "a found answer has YYYYMMDD rights dates",
                ))
            }
            RightsStatus::Unknown
                if !a.rights_from.is_empty() || !a.coverages.is_empty() || !a.amc.is_empty() =>
            {
                return Err(DerError::field(
                    "status",
                    "an unknown answer carries no rights",
                ))
            }
            _ => {}
        }
        let coverages = a
            .coverages
            .into_iter()
            .map(|c| {
                Ok(Coverage {
                    kind: kind_of(c.kind)?,
                    from: c.from,
                    until: c.until,
                })
            })
            .collect::<Result<Vec<_>, DerError>>()?;
        let answer = RightsAnswer {
            request_id: a.request_id,
            status,
            nir: a.nir,
            birth_date: a.birth_date,
            rank: rank_of(a.rank)?,
            organism: a.organism,
            surname: a.surname,
            given_name: a.given_name,
            rights_from: a.rights_from,
            rights_until: a.rights_until,
            coverages,
            amc: a.amc.into_iter().next().map(|m| Amc {
                number: m.number,
                name: m.name,
                direct: m.direct.0,
                tiers_payant: m.tiers_payant.0,
                from: m.from,
                until: m.until,
            }),
            answered_at: a.answered_at,
        };
        crate::der::require_canonical(bytes, &answer.to_der()?, "rights_answer")?;
        Ok(answer)
    }

    /// The organism as a card names it (régime 2, caisse 3, centre 4 digits).
    pub fn organism(&self) -> Organism {
        let o = &self.organism;
        // `from_der` checked 9 ASCII digits; an answer built in memory may not be: cut safely.
        let part = |a: usize, b: usize| o.get(a..b).unwrap_or_default().to_string();
        Organism {
            regime: part(0, 2),
            caisse: part(2, 5),
            centre: part(5, 9),
        }
    }

    /// Lays a found answer's rights over the card data fsed prices with: the beneficiary at
    /// `index` gets the answer's rights period and coverages, the card its organism and AMC.
    /// Identity (names, NIR, birth date, rank) stays the card's.
    pub fn overlay(&self, vitale: &mut VitaleData, index: usize) {
        if self.status != RightsStatus::Found {
            return;
        }
        if let Some(b) = vitale.beneficiaries.get_mut(index) {
            b.rights_from.clone_from(&self.rights_from);
            b.rights_until.clone_from(&self.rights_until);
            b.coverages.clone_from(&self.coverages);
        }
        vitale.organism = self.organism();
        vitale.amc.clone_from(&self.amc);
    }
}

/// Why a signed rights answer is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerRefusal {
    /// Not a rights answer (another kind of return).
    #[error("answer: not a rights answer")]
    NotRights,
    /// The certificate or signature failed.
    #[error("{0}")]
    Auth(ReturnAuthError),
    /// Signed by another insurer than the organism it names.
    #[error("organism: signed by insurer {signer} but names organism {organism}")]
    WrongInsurer {
        /// The signer's code.
        signer: String,
        /// The organism in the answer.
        organism: String,
    },
    /// The answer does not echo the request.
    #[error("{0}: does not echo the request")]
    Mismatch(&'static str),
    /// `answered_at` unreadable or older than allowed.
    #[error("answered_at: {0}")]
    Stale(String),
}

/// `YYYYMMDDHHMMSSZ` as Unix seconds.
pub fn stamp_seconds(stamp: &str) -> Option<i64> {
    NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M%SZ")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

/// Checks a signed rights answer for `request` at `now` (Unix seconds): the signer's
/// certificate chains to `trust` as an insurer's and signed it; the signer is the organism
/// the answer names; request id, NIR, birth date and rank echo the request; `answered_at` is
/// at most `max_age_secs` old (and not more than 5 minutes ahead). Gives the answer.
pub fn check_answer(
    signed: &SignedReturn,
    request: &RightsRequest,
    trust: &TrustStore,
    now: i64,
    max_age_secs: u64,
) -> Result<RightsAnswer, AnswerRefusal> {
    let ReturnContent::Rights(answer) = &signed.content else {
        return Err(AnswerRefusal::NotRights);
    };
    let signer = signed.verify(trust, now).map_err(AnswerRefusal::Auth)?;
    if signer != answer.organism {
        return Err(AnswerRefusal::WrongInsurer {
            signer,
            organism: answer.organism.clone(),
        });
    }
    for (field, same) in [
        ("request_id", answer.request_id == request.request_id),
        ("nir", answer.nir == request.nir),
        ("birth_date", answer.birth_date == request.birth_date),
        ("rank", answer.rank == request.rank),
    ] {
        if !same {
            return Err(AnswerRefusal::Mismatch(field));
        }
    }
    let at = stamp_seconds(&answer.answered_at)
        .ok_or_else(|| AnswerRefusal::Stale("not YYYYMMDDHHMMSSZ".into()))?;
    let age = now - at;
    if age < -300 {
        return Err(AnswerRefusal::Stale(format!("{} s in the future", -age)));
    }
    if u64::try_from(age).is_ok_and(|a| a > max_age_secs) {
        return Err(AnswerRefusal::Stale(format!(
            "answered {age} s ago, more than the {max_age_secs} s allowed"
        )));
    }
    Ok((**answer).clone())
}

/// Why a card's rights call for an online lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum LookupReason {
    /// The rights period ended before today.
    Closed {
        /// Its last day, `YYYYMMDD`.
        until: String,
    },
    /// The rights period began more than the allowed days ago: the card was last updated
    /// with rights that old.
    Old {
        /// Days since its first day.
        days: i64,
    },
    /// The card's rights dates do not read as `YYYYMMDD`.
    Unreadable,
    /// The Vitale app vouched for the patient: its rights are always asked online.
    App,
}

impl std::fmt::Display for LookupReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupReason::Closed { until } => write!(f, "card rights closed on {until}"),
            LookupReason::Old { days } => write!(f, "card rights updated {days} days ago"),
            LookupReason::Unreadable => f.write_str("card rights dates unreadable"),
            LookupReason::App => f.write_str("the Vitale app's rights are asked online"),
        }
    }
}

/// Whether a card's rights (`rights_from`, `rights_until`) need an online lookup on `today`:
/// closed (`rights_until` before today) or older than `max_card_age_days`, the age being
/// today − `rights_from`, the first day of the period the card was last updated with.
/// `None`: the card's rights are used as read.
pub fn lookup_needed(
    rights_from: &str,
    rights_until: &str,
    today: NaiveDate,
    max_card_age_days: u32,
) -> Option<LookupReason> {
    let (Ok(from), Ok(until)) = (
        NaiveDate::parse_from_str(rights_from, "%Y%m%d"),
        NaiveDate::parse_from_str(rights_until, "%Y%m%d"),
    ) else {
        return Some(LookupReason::Unreadable);
    };
    if until < today {
        return Some(LookupReason::Closed {
            until: rights_until.to_string(),
        });
    }
    let days = (today - from).num_days();
    (days > i64::from(max_card_age_days)).then_some(LookupReason::Old { days })
}

#[cfg(test)]
#[path = "rights_tests.rs"]
mod tests;
