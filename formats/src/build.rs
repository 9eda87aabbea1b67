//! Building a care sheet from an `fse.create` request and what the cards
//! say: every check a sheet can be refused on — each with a stable code and
//! the field at fault — then pricing (`rules`) and the sending deadline
//! (`calendar`). Pure: the caller reads the cards, the participation
//! history and the clock, allocates the sheet number and has the Vitale
//! card sign the proof of presence.
//!
//! Checks run in a fixed order — request shape (each text field's character set and length,
//! `text`, after its normalisation: the sheet carries the normalised text), CPS, situation,
//! remplaçant,
//! mode and Vitale card, beneficiary, dates and rights, cover, care path,
//! tiers payant, sending deadline, prescriptions and excess fees, prices,
//! expected amounts — so that a request with several faults always names the
//! same first one. The sending deadline comes before the acts: a sheet past it
//! cannot be sent whatever its acts, and a date too old for the tariff table
//! is past it too (unless a series reaches back that far: then
//! `TARIFF_DATE_UNKNOWN`).

use std::borrow::Cow;

use chrono::{Datelike, NaiveDate};

use crate::api::{ActRequest, FseCreateParams, MAX_ACTS};
use crate::cards::{Beneficiary, CardType, CoverageKind, CpsData, ExerciseMode, VitaleData};
use crate::fse::{
    Act, CarePath, CareSheet, Cover, CoverKind, Mode, SheetBeneficiary, SheetPractitioner,
    TiersPayant,
};
use crate::pki::{CertCheck, CertStatus};
use crate::text::{self, TextError};
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
/// The replaced practitioner's billing number: wrong key, the remplaçant's own, or not the one
/// the remplacement situation bills under.
pub const REPLACED_BILLING_NUMBER_INVALID: &str = "REPLACED_BILLING_NUMBER_INVALID";
/// The NIR's key does not match its 13 first characters.
pub const NIR_KEY_MISMATCH: &str = "NIR_KEY_MISMATCH";
/// The NIR's structure is wrong: its shape, sex digit, birth month, département, commune or
/// order number (the message names the part).
pub const NIR_INVALID: &str = "NIR_INVALID";
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
    REPLACED_BILLING_NUMBER_INVALID,
    DEGRADED_REASON_MISSING,
    DEGRADED_OUTSIDE_TIERS_PAYANT,
    VITALE_ABSENT,
    NIR_INVALID,
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

/// Step 1's text checks: every text field of the request that reaches a sheet or the queue,
/// against its character set and length (`text`, listed in `daemon/API.md`), after its
/// normalisation. Returns the request with its text normalised — borrowed when nothing
/// changed — which is what the sheet carries.
///
/// National identifiers (`replaced.national_id`, `acts[i].prescriber.national_id`), the NIR,
/// dates, the organism and the AT/MP number keep their own checks and refusal codes, later.
pub fn normalise_text(p: &FseCreateParams) -> Result<Cow<'_, FseCreateParams>, Refusal> {
    fn at(field: impl Into<String>) -> impl FnOnce(TextError) -> Refusal {
        let field = field.into();
        move |e| Refusal::invalid(field, e.0)
    }
    for (i, a) in requested_acts(p)?.iter().enumerate() {
        text::code(&a.code, text::ACT_CODE_MAX).map_err(at(format!("acts[{i}].code")))?;
        if a.modifiers.len() > text::MODIFIERS_PER_ACT {
            return Err(Refusal::invalid(
                format!("acts[{i}].modifiers"),
                format!(
                    "{} modifiers: at most {} on one act",
                    a.modifiers.len(),
                    text::MODIFIERS_PER_ACT
                ),
            ));
        }
        for (j, m) in a.modifiers.iter().enumerate() {
            let field = format!("acts[{i}].modifiers[{j}]");
            text::code(m, text::MODIFIER_MAX).map_err(at(field.clone()))?;
            if a.modifiers[..j].contains(m) {
                return Err(Refusal::invalid(
                    field,
                    format!("modifier {m} is listed twice on the act"),
                ));
            }
        }
    }
    if let Some(k) = &p.idempotency_key {
        text::visible_ascii(k, text::IDEMPOTENCY_KEY_MAX).map_err(at("idempotency_key"))?;
    }
    let mut replaced_names = None;
    if let Some(r) = &p.replaced {
        let surname = text::name(&r.surname).map_err(at("replaced.surname"))?;
        let given_name = text::name(&r.given_name).map_err(at("replaced.given_name"))?;
        text::digits(&r.billing_number, text::BILLING_NUMBER_LEN)
            .map_err(at("replaced.billing_number"))?;
        replaced_names = Some((surname, given_name));
    }
    let mut reason = None;
    let mut typed_names = None;
    if let Some(d) = &p.degraded {
        // An empty reason passes here: `DEGRADED_REASON_MISSING` names it, in its place.
        reason = Some(text::free_text(&d.reason, text::REASON_MAX).map_err(at("degraded.reason"))?);
        if let Some(b) = &d.beneficiary {
            let surname = text::name(&b.surname).map_err(at("degraded.beneficiary.surname"))?;
            let given_name =
                text::name(&b.given_name).map_err(at("degraded.beneficiary.given_name"))?;
            typed_names = Some((surname, given_name));
        }
    }
    let owned = |c: &Option<Cow<'_, str>>| matches!(c, Some(Cow::Owned(_)));
    let pair_owned = |c: &Option<(Cow<'_, str>, Cow<'_, str>)>| {
        c.as_ref()
            .is_some_and(|(a, b)| matches!(a, Cow::Owned(_)) || matches!(b, Cow::Owned(_)))
    };
    if !owned(&reason) && !pair_owned(&replaced_names) && !pair_owned(&typed_names) {
        return Ok(Cow::Borrowed(p));
    }
    let (reason, replaced_names, typed_names) = (
        reason.map(Cow::into_owned),
        replaced_names.map(|(a, b)| (a.into_owned(), b.into_owned())),
        typed_names.map(|(a, b)| (a.into_owned(), b.into_owned())),
    );
    let mut q = p.clone();
    if let (Some(r), Some((surname, given_name))) = (&mut q.replaced, replaced_names) {
        r.surname = surname;
        r.given_name = given_name;
    }
    if let Some(d) = &mut q.degraded {
        if let Some(reason) = reason {
            d.reason = reason;
        }
        if let (Some(b), Some((surname, given_name))) = (&mut d.beneficiary, typed_names) {
            b.surname = surname;
            b.given_name = given_name;
        }
    }
    Ok(Cow::Owned(q))
}

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

/// Whether `id` is a national practitioner identifier: `8` + RPPS (11 digits, Luhn key) or
/// `0` + ADELI (9 characters).
pub fn national_id_is_valid(id: &str) -> bool {
    match id.as_bytes().first() {
        Some(b'8') => id.len() == 12 && ids::rpps_is_valid(&id[1..]),
        Some(b'0') => id.len() == 10 && id.bytes().all(|c| c.is_ascii_alphanumeric()),
        _ => false,
    }
}

/// A remplaçant bills under the titular's billing number: the sheet is paid on it
/// (`CareSheet::payee_billing_number`), while the remplaçant's own national id records who did
/// the care. The CPS's remplacement situation carries the number it bills under; the number
/// the request gives for the titular must have its Luhn key, must not be one of the
/// remplaçant's own situations (libéral or salarié), and must be the remplacement situation's.
/// The card does not say whose number that is: the titular's national id and name go on the
/// sheet as given, for the insurer to check against its directory.
fn check_replaced_billing_number(
    number: &str,
    cps: &CpsData,
    situation: usize,
) -> Result<(), Refusal> {
    let refuse = |why: String| {
        Refusal::rule(
            REPLACED_BILLING_NUMBER_INVALID,
            "replaced.billing_number",
            why,
        )
    };
    if !ids::billing_number_is_valid(number) {
        return Err(refuse(format!(
            "billing number {number}: its last digit is not the Luhn key of the first seven"
        )));
    }
    if let Some((i, _)) = cps
        .situations
        .iter()
        .enumerate()
        .find(|(_, s)| s.mode != ExerciseMode::Remplacant && s.billing_number == number)
    {
        return Err(refuse(format!(
            "billing number {number} is the remplaçant's own (situation {i}), not the titular's"
        )));
    }
    match cps.situations.get(situation) {
        Some(s) if s.billing_number == number => Ok(()),
        Some(s) => Err(refuse(format!(
            "billing number {number} is not the titular's: the remplacement situation {situation} \
             on the CPS bills under {}",
            s.billing_number
        ))),
        // The situation was found before this check is reached.
        None => Err(Refusal::invalid(
            "situation",
            format!("the CPS has {} situations", cps.situations.len()),
        )),
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
    // 1. The request's shape: its text, normalised, is what the sheet carries from here on.
    let normalised = normalise_text(p)?;
    let p: &FseCreateParams = &normalised;
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
            check_replaced_billing_number(&r.billing_number, cps, p.situation)?;
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
        if let Err(e) = text::code(&at.number, text::AT_MP_NUMBER_MAX) {
            return Err(Refusal::rule(
                AT_MP_INVALID,
                "at_mp.number",
                match e.0.strip_prefix("is ") {
                    Some(rest) => format!("the AT/MP number given by the caisse is {rest}"),
                    None => format!("the AT/MP number given by the caisse: {e}"),
                },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{BeneficiaryRequest, DegradedRequest, TiersPayantRequest};
    use crate::cards::{CpsHolder, Situation};
    use crate::fse::ReplacedPractitioner;

    fn situation(index: u8, billing_number: &str, mode: ExerciseMode) -> Situation {
        Situation {
            index,
            billing_number: billing_number.into(),
            place: "Cabinet du Parc, 75011 Paris".into(),
            sector: 1,
            may_sign_invoice: true,
            may_sign_lot: true,
            mode,
        }
    }

    fn cps(situations: Vec<Situation>) -> CpsData {
        CpsData {
            holder: CpsHolder {
                card_type: CardType::Cps,
                serial: "CPS-0101".into(),
                national_id: "810000001015".into(),
                surname: "LEROY".into(),
                given_name: "Marc".into(),
                profession: "10".into(),
                specialty: "01".into(),
                valid_until: "20291231".into(),
            },
            situations,
            public_key: [0; 32],
            certificate: None,
        }
    }

    /// A GP's degraded sheet for Jean DUPONT, typed from the paper attestation.
    fn degraded() -> FseCreateParams {
        FseCreateParams {
            act: Some(serde_json::from_value(serde_json::json!({"code": "G"})).unwrap()),
            tiers_payant: Some(TiersPayantRequest {
                amo: true,
                amc: false,
            }),
            degraded: Some(DegradedRequest {
                reason: "carte Vitale oubliée".into(),
                beneficiary: Some(BeneficiaryRequest {
                    nir: "185057800608491".into(),
                    surname: "DUPONT".into(),
                    given_name: "Jean".into(),
                    birth_date: "19850512".into(),
                    rank: 1,
                    organism: "017510001".into(),
                }),
            }),
            ..FseCreateParams::default()
        }
    }

    fn run(p: &FseCreateParams, card: &CpsData) -> Result<CareSheet, Refusal> {
        let cards = CardsRead {
            cps: card,
            cps_certificate: None,
            vitale: None,
            vitale_certificate: None,
        };
        let today = NaiveDate::from_ymd_opt(2026, 11, 16).unwrap();
        build(
            p,
            &cards,
            today,
            "20261116093000Z",
            rules::Tables::builtin(),
            &|_| rules::PfHistory::default(),
        )
    }

    fn liberal() -> CpsData {
        cps(vec![situation(0, "75123455", ExerciseMode::Liberal)])
    }

    fn typed(p: &mut FseCreateParams) -> &mut BeneficiaryRequest {
        p.degraded.as_mut().unwrap().beneficiary.as_mut().unwrap()
    }

    #[test]
    fn the_sheet_carries_the_normalised_text() {
        let mut p = degraded();
        // NFD "Zoé" (e + U+0301), a typographic apostrophe, spaces around; reason in NFD too.
        typed(&mut p).given_name = " Zoe\u{301} ".into();
        typed(&mut p).surname = "D\u{2019}ARC".into();
        p.degraded.as_mut().unwrap().reason = "carte oublie\u{301}e".into();
        let sheet = run(&p, &liberal()).unwrap();
        assert_eq!(sheet.beneficiary.given_name, "Zo\u{e9}");
        assert_eq!(sheet.beneficiary.surname, "D'ARC");
        assert_eq!(sheet.degraded_reason.as_deref(), Some("carte oubli\u{e9}e"));
        // The DER (what is signed and sent) carries them too: é is C3 A9 in UTF-8.
        let der = sheet.body_to_der().unwrap();
        assert!(der.windows(4).any(|w| w == b"Zo\xc3\xa9"), "NFC in the DER");
        assert!(
            der.windows(5).any(|w| w == b"D'ARC"),
            "ASCII apostrophe in the DER"
        );
        // Already clean text is not copied.
        assert!(matches!(
            normalise_text(&degraded()).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn text_fields_are_refused_naming_field_and_character() {
        type Change = Box<dyn Fn(&mut FseCreateParams)>;
        let cases: Vec<(Change, &str, &str)> = vec![
            (
                Box::new(|p| typed(p).surname = "DUP\u{202e}ONT".into()),
                "degraded.beneficiary.surname",
                "character U+202E at position 4 ",
            ),
            (
                Box::new(|p| typed(p).given_name = "J".repeat(10_000)),
                "degraded.beneficiary.given_name",
                "is 10000 characters long: at most 80",
            ),
            (
                Box::new(|p| typed(p).given_name = "Jean\u{0}".into()),
                "degraded.beneficiary.given_name",
                "character U+0000 at position 5 ",
            ),
            (
                Box::new(|p| p.degraded.as_mut().unwrap().reason = "oubli \u{1b}[2J".into()),
                "degraded.reason",
                "character U+001B at position 7 ",
            ),
            (
                Box::new(|p| p.act.as_mut().unwrap().code = "G".repeat(5000)),
                "acts[0].code",
                "is 5000 characters long: at most 16",
            ),
            (
                Box::new(|p| p.act.as_mut().unwrap().modifiers = vec!["MEG".into(), "MEG".into()]),
                "acts[0].modifiers[1]",
                "modifier MEG is listed twice on the act",
            ),
            (
                Box::new(|p| p.act.as_mut().unwrap().modifiers = vec!["meg".into()]),
                "acts[0].modifiers[0]",
                "character 'm' (U+006D) at position 1 ",
            ),
            (
                Box::new(|p| p.idempotency_key = Some("visit 42".into())),
                "idempotency_key",
                "character U+0020 at position 6 ",
            ),
        ];
        for (change, field, reason) in cases {
            let mut p = degraded();
            change(&mut p);
            let r = run(&p, &liberal()).unwrap_err();
            assert_eq!(
                (r.kind, r.rule, r.field.as_str()),
                (RefusalKind::Invalid, BAD_REQUEST, field)
            );
            assert!(r.message.starts_with(reason), "{field}: {}", r.message);
        }
        // An empty reason is still DEGRADED_REASON_MISSING, in its place.
        let mut p = degraded();
        p.degraded.as_mut().unwrap().reason = "  ".into();
        assert_eq!(
            run(&p, &liberal()).unwrap_err().rule,
            DEGRADED_REASON_MISSING
        );
    }

    #[test]
    fn nir_structure_and_rank_of_a_typed_beneficiary() {
        let mut p = degraded();
        // All zeros with their key: 97 − 0 = 97.
        typed(&mut p).nir = "000000000000097".into();
        let r = run(&p, &liberal()).unwrap_err();
        assert_eq!(
            (r.rule, r.field.as_str()),
            (NIR_INVALID, "degraded.beneficiary.nir")
        );
        assert!(
            r.message.contains("sex digit (character 1) is 0"),
            "{}",
            r.message
        );
        // Month 13 with its key (ids.rs: 6 + 66 = 72 → 25).
        typed(&mut p).nir = "185137800608425".into();
        let r = run(&p, &liberal()).unwrap_err();
        assert!(
            r.message.contains("birth month (characters 4-5) is 13"),
            "{}",
            r.message
        );
        typed(&mut p).nir = "185057800608400".into();
        assert_eq!(run(&p, &liberal()).unwrap_err().rule, NIR_KEY_MISMATCH);
        let mut p = degraded();
        typed(&mut p).rank = 0;
        let r = run(&p, &liberal()).unwrap_err();
        assert_eq!(
            (r.rule, r.field.as_str()),
            (BAD_REQUEST, "degraded.beneficiary.rank")
        );
        typed(&mut p).rank = 10;
        assert_eq!(
            run(&p, &liberal()).unwrap_err().field,
            "degraded.beneficiary.rank"
        );
        typed(&mut p).rank = 9;
        assert_eq!(run(&p, &liberal()).unwrap().beneficiary.rank, 9);
    }

    /// LEROY's card: situation 0 replaces the titular of 75123455, situation 1 is his salaried
    /// post under 92123454.
    fn remplacant() -> CpsData {
        cps(vec![
            situation(0, "75123455", ExerciseMode::Remplacant),
            situation(1, "92123454", ExerciseMode::Salarie),
        ])
    }

    fn replacing(billing_number: &str) -> FseCreateParams {
        let mut p = degraded();
        p.replaced = Some(ReplacedPractitioner {
            national_id: "810000000009".into(),
            surname: "MARTIN".into(),
            given_name: "Claire".into(),
            billing_number: billing_number.into(),
        });
        p
    }

    #[test]
    fn a_remplacant_bills_under_the_titulars_number() {
        let sheet = run(&replacing("75123455"), &remplacant()).unwrap();
        assert_eq!(sheet.payee_billing_number(), "75123455");
        assert_eq!(
            sheet.practitioner.national_id, "810000001015",
            "who did the care"
        );
        let json = serde_json::to_value(&sheet).unwrap();
        assert_eq!(json["payee_billing_number"], "75123455");
        // Read back, the derived member is ignored.
        let back: CareSheet = serde_json::from_value(json).unwrap();
        assert_eq!(back, sheet);

        for (number, why) in [
            // 75123456: the Luhn sum of 7512345 with key 6 is 31, not a multiple of 10.
            ("75123456", "its last digit is not the Luhn key"),
            ("92123454", "is the remplaçant's own (situation 1)"),
            // 75123489 has its key (sum 50) but is another practitioner's.
            (
                "75123489",
                "the remplacement situation 0 on the CPS bills under 75123455",
            ),
        ] {
            let r = run(&replacing(number), &remplacant()).unwrap_err();
            assert_eq!(
                (r.rule, r.field.as_str()),
                (REPLACED_BILLING_NUMBER_INVALID, "replaced.billing_number"),
                "{number}"
            );
            assert!(r.message.contains(why), "{number}: {}", r.message);
        }
        let r = run(&replacing("7512345"), &remplacant()).unwrap_err();
        assert_eq!(
            (r.rule, r.field.as_str()),
            (BAD_REQUEST, "replaced.billing_number")
        );
        let mut p = replacing("75123455");
        p.replaced.as_mut().unwrap().surname = "MARTIN\u{1f600}".into();
        let r = run(&p, &remplacant()).unwrap_err();
        assert_eq!(
            (r.rule, r.field.as_str()),
            (BAD_REQUEST, "replaced.surname")
        );
        p.replaced.as_mut().unwrap().surname = "MARTIN".into();
        p.replaced.as_mut().unwrap().given_name = String::new();
        assert_eq!(
            run(&p, &remplacant()).unwrap_err().field,
            "replaced.given_name"
        );
    }

    #[test]
    fn a_titulars_sheet_is_paid_on_his_own_number() {
        let sheet = run(&degraded(), &liberal()).unwrap();
        assert_eq!(
            sheet.payee_billing_number(),
            sheet.practitioner.billing_number
        );
    }
}
