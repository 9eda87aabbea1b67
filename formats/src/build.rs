//! Building a care sheet from an `fse.create` request and what the cards
//! say: every check a sheet can be refused on — each with a stable code and
//! the field at fault — then pricing (`rules`) and the sending deadline
//! (`calendar`). Pure: the caller reads the cards, the participation
//! history and the clock, allocates the sheet number and has the Vitale
//! card sign the proof of presence.
//!
//! Checks run in a fixed order — request shape, CPS, situation, remplaçant,
//! mode and Vitale card, beneficiary, dates and rights, cover, care path,
//! tiers payant, sending deadline, prescriptions and excess fees, prices,
//! expected amounts — so that a request with several faults always names the
//! same first one. The sending deadline comes before the acts: a sheet past it
//! cannot be sent whatever its acts, and a date too old for the tariff table
//! is past it too (unless a series reaches back that far: then
//! `TARIFF_DATE_UNKNOWN`).

use chrono::{Datelike, NaiveDate};

use crate::api::{ActRequest, FseCreateParams, MAX_ACTS};
use crate::cards::{Beneficiary, CardType, CoverageKind, CpsData, ExerciseMode, VitaleData};
use crate::fse::{
    Act, CarePath, CareSheet, Cover, CoverKind, Mode, SheetBeneficiary, SheetPractitioner,
    TiersPayant,
};
use crate::pki::{CertCheck, CertStatus};
use crate::{calendar, ids, rules};

/// What kind of refusal: malformed parameters, a card that may not do this, or a business rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The request is malformed (JSON-RPC `INVALID_PARAMS`).
    Invalid,
    /// A card may not make this sheet (`CARD_NOT_ALLOWED`).
    Card,
    /// A business rule refuses the sheet (`RULE_VIOLATION`).
    Rule,
}

/// Why a sheet is refused: a stable rule code, the field at fault, a readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule} ({field}): {message}")]
pub struct Refusal {
    /// Kind, which picks the API error code.
    pub kind: RefusalKind,
    /// Stable code, e.g. [`UNKNOWN_ACT`].
    pub rule: &'static str,
    /// The field at fault, as the API names it (`acts[1].prescriber`).
    pub field: String,
    /// Readable message.
    pub message: String,
}

impl Refusal {
    fn new(
        kind: RefusalKind,
        rule: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Refusal {
            kind,
            rule,
            field: field.into(),
            message: message.into(),
        }
    }

    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Invalid, BAD_REQUEST, field, message)
    }

    fn rule(rule: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Rule, rule, field, message)
    }

    fn card(rule: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Card, rule, field, message)
    }
}

/// A parameter is missing, malformed or out of range.
pub const BAD_REQUEST: &str = "BAD_REQUEST";
/// A staff card (CPE) may prepare but not sign sheets.
pub const STAFF_CARD: &str = "STAFF_CARD";
/// The CPS is past its end of validity.
pub const CARD_EXPIRED: &str = "CARD_EXPIRED";
/// The card's certificate is revoked, expired, untrusted or does not match its key.
pub const CERTIFICATE_REFUSED: &str = "CERTIFICATE_REFUSED";
/// The Vitale card is on the opposition list.
pub const VITALE_OPPOSED: &str = "VITALE_OPPOSED";
/// The chosen situation d'exercice may not sign invoices.
pub const SITUATION_MAY_NOT_SIGN: &str = "SITUATION_MAY_NOT_SIGN";
/// A remplaçant's sheet without the practitioner replaced.
pub const REPLACED_MISSING: &str = "REPLACED_MISSING";
/// A practitioner replaced on a sheet whose situation is not a remplacement.
pub const REPLACED_UNEXPECTED: &str = "REPLACED_UNEXPECTED";
/// Degraded mode without its reason.
pub const DEGRADED_REASON_MISSING: &str = "DEGRADED_REASON_MISSING";
/// Degraded mode outside AMO tiers payant.
pub const DEGRADED_OUTSIDE_TIERS_PAYANT: &str = "DEGRADED_OUTSIDE_TIERS_PAYANT";
/// Secured mode without a Vitale card.
pub const VITALE_ABSENT: &str = "VITALE_ABSENT";
/// The NIR's key does not match its 13 first characters.
pub const NIR_KEY_MISMATCH: &str = "NIR_KEY_MISMATCH";
/// A date of care after today.
pub const ACT_DATE_IN_FUTURE: &str = "ACT_DATE_IN_FUTURE";
/// A date of care before the beneficiary's birth.
pub const ACT_DATE_BEFORE_BIRTH: &str = "ACT_DATE_BEFORE_BIRTH";
/// The sending deadline of a date of care has passed.
pub const PAST_DEADLINE: &str = "PAST_DEADLINE";
/// No open AMO rights at a date of care.
pub const RIGHTS_CLOSED: &str = "RIGHTS_CLOSED";
/// ALD care for a beneficiary without an open ALD on the card.
pub const ALD_NOT_OPEN: &str = "ALD_NOT_OPEN";
/// AT/MP cover without a usable date or number.
pub const AT_MP_INVALID: &str = "AT_MP_INVALID";
/// A care path for a profession that has none, or missing for one that has.
pub const CARE_PATH_INVALID: &str = "CARE_PATH_INVALID";
/// The law makes the AMO tiers payant compulsory here (CSS, maternity, AT/MP, ALD).
pub const TIERS_PAYANT_REQUIRED: &str = "TIERS_PAYANT_REQUIRED";
/// AMC tiers payant asked for without an AMC that offers it.
pub const AMC_TIERS_PAYANT_UNAVAILABLE: &str = "AMC_TIERS_PAYANT_UNAVAILABLE";
/// An act on prescription without its prescriber.
pub const PRESCRIPTION_MISSING: &str = "PRESCRIPTION_MISSING";
/// A prescriber whose identifier or date is not acceptable.
pub const PRESCRIBER_INVALID: &str = "PRESCRIBER_INVALID";
/// An excess fee the practitioner's sector does not allow.
pub const EXCESS_NOT_ALLOWED: &str = "EXCESS_NOT_ALLOWED";
/// The amounts the request expects differ from fsed's.
pub const AMOUNTS_INCONSISTENT: &str = "AMOUNTS_INCONSISTENT";

/// Every rule code a sheet can be refused with: this module's and the pricing rules'.
pub const ALL_RULES: &[&str] = &[
    BAD_REQUEST,
    STAFF_CARD,
    CARD_EXPIRED,
    CERTIFICATE_REFUSED,
    VITALE_OPPOSED,
    SITUATION_MAY_NOT_SIGN,
    REPLACED_MISSING,
    REPLACED_UNEXPECTED,
    DEGRADED_REASON_MISSING,
    DEGRADED_OUTSIDE_TIERS_PAYANT,
    VITALE_ABSENT,
    NIR_KEY_MISMATCH,
    ACT_DATE_IN_FUTURE,
    ACT_DATE_BEFORE_BIRTH,
    PAST_DEADLINE,
    RIGHTS_CLOSED,
    ALD_NOT_OPEN,
    AT_MP_INVALID,
    CARE_PATH_INVALID,
    TIERS_PAYANT_REQUIRED,
    AMC_TIERS_PAYANT_UNAVAILABLE,
    PRESCRIPTION_MISSING,
    PRESCRIBER_INVALID,
    EXCESS_NOT_ALLOWED,
    AMOUNTS_INCONSISTENT,
    "UNKNOWN_ACT",
    "TARIFF_DATE_UNKNOWN",
    "ACT_NOT_ALLOWED_FOR_PROFESSION",
    "UNKNOWN_MODIFIER",
    "BAD_ACT",
];

/// What fsed read from the cards for this sheet.
#[derive(Debug, Clone, Copy)]
pub struct CardsRead<'a> {
    /// The CPS.
    pub cps: &'a CpsData,
    /// The outcome of its certificate check (`None`: not checked).
    pub cps_certificate: Option<&'a CertCheck>,
    /// The Vitale card (absent in degraded mode).
    pub vitale: Option<&'a VitaleData>,
    /// The outcome of its certificate check.
    pub vitale_certificate: Option<&'a CertCheck>,
}

/// Parses a `YYYYMMDD` date: eight ASCII digits naming a real day.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| b[r].iter().fold(0u32, |a, c| a * 10 + u32::from(c - b'0'));
    NaiveDate::from_ymd_opt(i32::try_from(n(0..4)).ok()?, n(4..6), n(6..8))
}

/// A date as `YYYYMMDD`.
pub fn ymd(d: NaiveDate) -> String {
    format!("{:04}{:02}{:02}", d.year(), d.month(), d.day())
}

/// The acts of a request: `acts`, or the single `act`.
pub fn requested_acts(p: &FseCreateParams) -> Result<Vec<&ActRequest>, Refusal> {
    let acts: Vec<&ActRequest> = match (&p.act, p.acts.is_empty()) {
        (Some(_), false) => {
            return Err(Refusal::invalid(
                "act",
                "give either `act` or `acts`, not both",
            ))
        }
        (Some(a), true) => vec![a],
        (None, _) => p.acts.iter().collect(),
    };
    if acts.is_empty() {
        return Err(Refusal::invalid("acts", "a sheet has at least one act"));
    }
    if acts.len() > MAX_ACTS {
        return Err(Refusal::invalid(
            "acts",
            format!("a sheet has at most {MAX_ACTS} acts"),
        ));
    }
    Ok(acts)
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
        if !ids::nir_is_valid(&b.nir) {
            return Err(Refusal::rule(
                NIR_KEY_MISMATCH,
                "degraded.beneficiary.nir",
                "the NIR's key does not match (15 characters: 13 then the key)",
            ));
        }
        if parse_date(&b.birth_date).is_none() {
            return Err(Refusal::invalid(
                "degraded.beneficiary.birth_date",
                "expected YYYYMMDD",
            ));
        }
        if b.surname.trim().is_empty() || b.given_name.trim().is_empty() {
            return Err(Refusal::invalid(
                "degraded.beneficiary.surname",
                "surname and given name are required",
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
    if !ids::nir_is_valid(&b.nir) {
        return Err(Refusal::rule(
            NIR_KEY_MISMATCH,
            "beneficiary.nir",
            "the NIR's key on the card does not match",
        ));
    }
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

/// The key under which the queue keeps a beneficiary's participation history. The history is
/// the beneficiary's, all professionals together (the year's cap needs them all); each line
/// names its professional (the day's cap is per professional): see [`history_on`].
pub fn history_key(b: &SheetBeneficiary) -> String {
    format!("{}:{}:{}", b.nir, b.birth_date, b.rank)
}

/// Whether `id` is a national practitioner identifier: `8` + RPPS (11 digits, Luhn key) or
/// `0` + ADELI (9 characters).
pub fn national_id_is_valid(id: &str) -> bool {
    match id.as_bytes().first() {
        Some(b'8') => id.len() == 12 && ids::rpps_is_valid(&id[1..]),
        Some(b'0') => id.len() == 10 && id.bytes().all(|c| c.is_ascii_alphanumeric()),
        _ => false,
    }
}

fn in_range(from: &str, until: &str, date: NaiveDate) -> bool {
    matches!((parse_date(from), parse_date(until)), (Some(f), Some(u)) if f <= date && date <= u)
}

/// Builds, checks and prices the sheet `p` asks for. The result has number 0 and no proof of
/// presence: the caller allocates the number, then has the Vitale card sign (secured mode).
///
/// `history` gives the participation forfaitaire already withheld for this beneficiary (keyed
/// by [`history_key`]) on other sheets, per date of care, as the CPS holder's sheet sees it
/// ([`history_on`] with his national id: the professional of the day's cap is the one who
/// performs the acts and signs with his CPS, a remplaçant included).
pub fn build(
    p: &FseCreateParams,
    cards: &CardsRead<'_>,
    today: NaiveDate,
    created_at: &str,
    tables: &rules::Tables,
    history: &dyn Fn(NaiveDate) -> rules::PfHistory,
) -> Result<CareSheet, Refusal> {
    // 1. The request's shape.
    let requested = requested_acts(p)?;
    let mut dates = Vec::with_capacity(requested.len());
    for (i, a) in requested.iter().enumerate() {
        let date = match &a.date {
            Some(d) => parse_date(d)
                .ok_or_else(|| Refusal::invalid(format!("acts[{i}].date"), "expected YYYYMMDD"))?,
            None => today,
        };
        dates.push(date);
    }

    // 2. The CPS.
    let cps = cards.cps;
    if cps.holder.card_type != CardType::Cps {
        return Err(Refusal::card(
            STAFF_CARD,
            "cps",
            "a staff card (CPE) may prepare but not sign care sheets",
        ));
    }
    if parse_date(&cps.holder.valid_until).is_none_or(|end| end < today) {
        return Err(Refusal::card(CARD_EXPIRED, "cps", "the CPS has expired"));
    }
    if let Some(why) = cards.cps_certificate.and_then(CertCheck::refusal) {
        return Err(Refusal::card(
            CERTIFICATE_REFUSED,
            "cps",
            format!("CPS {}: {why}", cps.holder.serial),
        ));
    }

    // 3. The situation d'exercice.
    let situation = cps.situations.get(p.situation).ok_or_else(|| {
        Refusal::invalid(
            "situation",
            format!("the CPS has {} situations", cps.situations.len()),
        )
    })?;
    if !situation.may_sign_invoice {
        return Err(Refusal::card(
            SITUATION_MAY_NOT_SIGN,
            "situation",
            "this situation d'exercice may not sign invoices",
        ));
    }

    // 4. Remplaçant and practitioner replaced.
    match (situation.mode == ExerciseMode::Remplacant, &p.replaced) {
        (true, None) => {
            return Err(Refusal::rule(
                REPLACED_MISSING,
                "replaced",
                "a remplaçant's sheet names the practitioner replaced",
            ))
        }
        (false, Some(_)) => {
            return Err(Refusal::rule(
                REPLACED_UNEXPECTED,
                "replaced",
                "this situation d'exercice is not a remplacement",
            ))
        }
        (true, Some(r)) => {
            if !national_id_is_valid(&r.national_id) || r.national_id == cps.holder.national_id {
                return Err(Refusal::rule(
                    REPLACED_MISSING,
                    "replaced.national_id",
                    "the replaced practitioner's RPPS (8 + 11 digits) or ADELI (0 + 9), not the remplaçant's own",
                ));
            }
            if r.surname.trim().is_empty() || r.billing_number.trim().is_empty() {
                return Err(Refusal::invalid(
                    "replaced.billing_number",
                    "surname and billing number of the practitioner replaced are required",
                ));
            }
        }
        (false, None) => {}
    }

    // 5. Mode and Vitale card.
    let mode = match &p.degraded {
        Some(d) if d.reason.trim().is_empty() => {
            return Err(Refusal::rule(
                DEGRADED_REASON_MISSING,
                "degraded.reason",
                "degraded mode needs its reason (no card, card unreadable …)",
            ))
        }
        Some(_) => Mode::Degraded,
        None => Mode::Secured,
    };
    let vitale = if mode == Mode::Secured {
        cards.vitale
    } else {
        None
    };
    if let (Some(v), Some(check)) = (vitale, cards.vitale_certificate) {
        if let Some(why) = check.refusal() {
            let (rule, what) = if check.status == CertStatus::Revoked {
                (VITALE_OPPOSED, "is on the opposition list")
            } else {
                (CERTIFICATE_REFUSED, "is not trusted")
            };
            return Err(Refusal::card(
                rule,
                "vitale",
                format!("Vitale card {} {what}: {why}", v.serial),
            ));
        }
    }

    // 6. The beneficiary.
    let (beneficiary, on_card) = beneficiary(p, vitale)?;
    let birth = parse_date(&beneficiary.birth_date).ok_or_else(|| {
        Refusal::invalid(
            "beneficiary.birth_date",
            "unreadable birth date on the card",
        )
    })?;

    // 7. Dates of care, deadline and rights.
    let (mut first, mut last) = (0, 0);
    for (i, date) in dates.iter().enumerate() {
        if *date > today {
            return Err(Refusal::rule(
                ACT_DATE_IN_FUTURE,
                format!("acts[{i}].date"),
                format!("date of care {} is after today", ymd(*date)),
            ));
        }
        if *date < birth {
            return Err(Refusal::rule(
                ACT_DATE_BEFORE_BIRTH,
                format!("acts[{i}].date"),
                "date of care before the beneficiary's birth",
            ));
        }
        if let Some(b) = on_card {
            if !in_range(&b.rights_from, &b.rights_until, *date) {
                return Err(Refusal::rule(
                    RIGHTS_CLOSED,
                    "beneficiary.rights",
                    format!("no open AMO rights on {}", ymd(*date)),
                ));
            }
        }
        if *date < dates[first] {
            first = i;
        }
        if *date > dates[last] {
            last = i;
        }
    }
    // Coverage on the card on the date of care (all acts of a sheet fall under one cover).
    let covered = |kind: CoverageKind| {
        on_card.is_some_and(|b| {
            b.coverages
                .iter()
                .any(|c| c.kind == kind && dates.iter().all(|d| in_range(&c.from, &c.until, *d)))
        })
    };

    // 8. Cover.
    let kind = if let Some(at) = &p.at_mp {
        let date = parse_date(&at.date)
            .ok_or_else(|| Refusal::rule(AT_MP_INVALID, "at_mp.date", "expected YYYYMMDD"))?;
        if date > dates[first] {
            return Err(Refusal::rule(
                AT_MP_INVALID,
                "at_mp.date",
                "the accident or first finding is after the care",
            ));
        }
        if at.number.trim().is_empty() || at.number.len() > 20 {
            return Err(Refusal::rule(
                AT_MP_INVALID,
                "at_mp.number",
                "the AT/MP number (1 to 20 characters) given by the caisse",
            ));
        }
        CoverKind::AtMp
    } else if covered(CoverageKind::Maternite) {
        CoverKind::Maternite
    } else {
        CoverKind::Maladie
    };
    if p.ald && on_card.is_some() && !covered(CoverageKind::Ald) {
        return Err(Refusal::rule(
            ALD_NOT_OPEN,
            "ald",
            "the Vitale card shows no open ALD for this beneficiary at the date of care",
        ));
    }
    let cover = Cover {
        kind,
        ald: p.ald,
        css: covered(CoverageKind::Css),
        at_mp: p.at_mp.clone(),
    };

    // 9. Care path: doctors only.
    let doctor = cps.holder.profession == "10";
    let care_path = match (doctor, p.care_path) {
        (true, None) => CarePath::Treating,
        (true, Some(CarePath::NotApplicable)) => {
            return Err(Refusal::rule(
                CARE_PATH_INVALID,
                "care_path",
                "a doctor's sheet says where it stands in the care path",
            ))
        }
        (true, Some(c)) => c,
        (false, None | Some(CarePath::NotApplicable)) => CarePath::NotApplicable,
        (false, Some(_)) => {
            return Err(Refusal::rule(
                CARE_PATH_INVALID,
                "care_path",
                "the care path applies to doctors only",
            ))
        }
    };

    // 10. Tiers payant.
    let amc = vitale
        .and_then(|v| v.amc.as_ref())
        .filter(|a| dates.iter().all(|d| in_range(&a.from, &a.until, *d)));
    // Compulsory AMO tiers payant: CSS, maternity, AT/MP, ALD care (CSS art. L160-14,
    // L861-3, L432-1).
    let compulsory = cover.css || cover.kind != CoverKind::Maladie || cover.ald;
    let amc_offers = cover.css || amc.is_some_and(|a| a.tiers_payant && a.direct);
    let tiers_payant = match &p.tiers_payant {
        None => TiersPayant {
            amo: compulsory,
            amc: amc_offers,
            amc_number: amc.map(|a| a.number.clone()),
        },
        Some(t) => {
            if compulsory && !t.amo {
                return Err(Refusal::rule(
                    TIERS_PAYANT_REQUIRED,
                    "tiers_payant.amo",
                    "the AMO tiers payant is compulsory under CSS, maternity, AT/MP and ALD",
                ));
            }
            if t.amc && !amc_offers {
                return Err(Refusal::rule(
                    AMC_TIERS_PAYANT_UNAVAILABLE,
                    "tiers_payant.amc",
                    "the Vitale card shows no AMC paying the practitioner directly at the date of care",
                ));
            }
            TiersPayant {
                amo: t.amo,
                amc: t.amc,
                amc_number: amc.map(|a| a.number.clone()),
            }
        }
    };
    if mode == Mode::Degraded && !tiers_payant.amo {
        return Err(Refusal::rule(
            DEGRADED_OUTSIDE_TIERS_PAYANT,
            "degraded",
            "degraded mode is accepted in AMO tiers payant only",
        ));
    }

    // 11. The sending deadline.
    let payment = if tiers_payant.amo {
        calendar::Payment::TiersPayant
    } else {
        calendar::Payment::PatientPaid
    };
    // The deadline runs from the last date of care: a series of acts (physiotherapy, nursing)
    // is billed on one sheet once it is over.
    let deadline = calendar::sending_deadline(dates[last], payment, calendar::Region::Metropole)
        .ok_or_else(|| {
            Refusal::invalid(format!("acts[{last}].date"), "out of the calendar's range")
        })?;
    if deadline < today {
        return Err(Refusal::rule(
            PAST_DEADLINE,
            format!("acts[{last}].date"),
            format!(
                "the sending deadline of care of {} was {}",
                ymd(dates[last]),
                ymd(deadline)
            ),
        ));
    }

    // 12. Prescriptions and excess fees.
    for (i, (a, date)) in requested.iter().zip(&dates).enumerate() {
        let Some((tariff, _)) = tables
            .act(&a.code, *date)
            .filter(|(t, _)| t.professions.contains(&cps.holder.profession))
        else {
            continue; // priced below, which names the unknown or forbidden act
        };
        match (&a.prescriber, tariff.prescription) {
            (None, true) => {
                return Err(Refusal::rule(
                    PRESCRIPTION_MISSING,
                    format!("acts[{i}].prescriber"),
                    format!(
                        "act {} is billed on a prescription: name its prescriber",
                        a.code
                    ),
                ))
            }
            (Some(pr), _) => {
                if !national_id_is_valid(&pr.national_id) {
                    return Err(Refusal::rule(
                        PRESCRIBER_INVALID,
                        format!("acts[{i}].prescriber.national_id"),
                        "RPPS (8 + 11 digits, Luhn key) or ADELI (0 + 9)",
                    ));
                }
                match parse_date(&pr.date) {
                    Some(d) if d <= *date => {}
                    _ => {
                        return Err(Refusal::rule(
                            PRESCRIBER_INVALID,
                            format!("acts[{i}].prescriber.date"),
                            "the prescription's date (YYYYMMDD), on or before the care",
                        ))
                    }
                }
            }
            (None, false) => {}
        }
        if a.excess_cents > 0
            && tariff.family != rules::Family::HorsNomenclature
            && situation.sector == 1
            && !a
                .modifiers
                .iter()
                .any(|m| tables.modifier(m).is_some_and(|m| m.allows_excess))
        {
            return Err(Refusal::rule(
                EXCESS_NOT_ALLOWED,
                format!("acts[{i}].excess_cents"),
                "in sector 1 an excess fee needs the patient's particular demand (modifier DE)",
            ));
        }
    }

    // 13. Prices.
    let lines: Vec<rules::ActLine> = requested
        .iter()
        .zip(&dates)
        .map(|(a, date)| rules::ActLine {
            code: a.code.clone(),
            coefficient: a.coefficient,
            quantity: a.quantity,
            date: *date,
            excess_cents: a.excess_cents,
            modifiers: a.modifiers.clone(),
        })
        .collect();
    let ctx = rules::Context {
        birth_date: birth,
        cover: cover.kind,
        ald: cover.ald,
        css: cover.css,
        care_path,
        amc: amc.is_some(),
    };
    let priced = rules::price(&lines, &ctx, &cps.holder.profession, tables, history)
        .map_err(|e| Refusal::rule(e.code(), e.field(), e.to_string()))?;
    let amounts = priced.amounts(&tiers_payant);

    // 14. What the practice software expects.
    if let Some(e) = &p.expected {
        let checks = [
            ("expected.total_cents", e.total_cents, amounts.total_cents),
            ("expected.amo_cents", e.amo_cents, amounts.amo_cents),
            ("expected.amc_cents", e.amc_cents, amounts.amc_cents),
            (
                "expected.patient_cents",
                e.patient_cents,
                amounts.patient_cents,
            ),
            ("expected.due_cents", e.due_cents, amounts.due_cents),
        ];
        for (field, expected, computed) in checks {
            if let Some(x) = expected {
                if x != computed {
                    return Err(Refusal::rule(
                        AMOUNTS_INCONSISTENT,
                        field,
                        format!("fsed computes {computed} cents, the request says {x}"),
                    ));
                }
            }
        }
    }

    let acts = requested
        .iter()
        .zip(&lines)
        .zip(&priced.acts)
        .map(|((a, line), x)| Act {
            code: line.code.clone(),
            coefficient: line.coefficient,
            quantity: line.quantity,
            date: ymd(line.date),
            modifiers: line.modifiers.clone(),
            prescriber: a.prescriber.clone(),
            base_cents: x.base_cents,
            excess_cents: line.excess_cents,
            rate: x.rate,
            amo_cents: x.amo_cents,
            pf_cents: x.pf_cents,
        })
        .collect();
    Ok(CareSheet {
        number: 0,
        created_at: created_at.to_string(),
        practitioner: SheetPractitioner {
            national_id: cps.holder.national_id.clone(),
            surname: cps.holder.surname.clone(),
            given_name: cps.holder.given_name.clone(),
            profession: cps.holder.profession.clone(),
            specialty: cps.holder.specialty.clone(),
            billing_number: situation.billing_number.clone(),
            sector: situation.sector,
            cps_serial: cps.holder.serial.clone(),
        },
        replaced: p.replaced.clone(),
        beneficiary,
        acts,
        care_path,
        cover,
        tiers_payant,
        amounts,
        mode,
        degraded_reason: p.degraded.as_ref().map(|d| d.reason.trim().to_string()),
        deadline: ymd(deadline),
        tables_version: priced.tables_version,
        presence: None,
    })
}

/// The participation forfaitaire a sheet withholds, per date of care (participations and
/// cents): what the queue keeps, with the sheet's professional, as the beneficiary's history.
pub fn participation_by_date(sheet: &CareSheet) -> Vec<rules::Withheld> {
    let mut out: Vec<rules::Withheld> = Vec::new();
    for a in &sheet.acts {
        let Some(date) = parse_date(&a.date) else {
            continue;
        };
        if a.pf_cents == 0 {
            continue;
        }
        match out.iter_mut().find(|w| w.date == date) {
            Some(w) => {
                w.acts += 1;
                w.cents += a.pf_cents;
            }
            None => out.push(rules::Withheld {
                date,
                acts: 1,
                cents: a.pf_cents,
            }),
        }
    }
    out
}

/// What a beneficiary's participation history (all professionals) leaves for a sheet of
/// `professional` (the CPS holder's national id) on `date`: the participations withheld that
/// day with him, and the cents withheld that year with everyone.
///
/// A line whose professional is unknown (kept from before fsed recorded it) counts against
/// every professional's day, and one whose number of participations is unknown counts as a
/// full day: fsed errs towards withholding less, never more.
pub fn history_on(
    entries: &[rules::PfEntry],
    professional: &str,
    date: NaiveDate,
) -> rules::PfHistory {
    let mut h = rules::PfHistory::default();
    for e in entries {
        if e.date.year() != date.year() {
            continue;
        }
        h.same_year_cents = h.same_year_cents.saturating_add(e.cents);
        if e.date == date && e.professional.as_deref().is_none_or(|p| p == professional) {
            h.same_day_with_professional = h
                .same_day_with_professional
                .saturating_add(e.acts.unwrap_or(u32::MAX));
        }
    }
    h
}
