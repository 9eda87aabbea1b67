//! Why a sheet is refused: the refusal itself (its kind, stable rule code, field and message)
//! and every stable rule code `build` and the pricing rules refuse with.

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
    pub(super) fn new(
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

    pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Invalid, BAD_REQUEST, field, message)
    }

    pub(super) fn rule(
        rule: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Refusal::new(RefusalKind::Rule, rule, field, message)
    }

    pub(super) fn card(
        rule: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
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
