//! Why a sheet is refused: the refusal itself (its kind, stable rule code, field and message)
//! and every stable rule code `build` and the pricing rules refuse with ([`Rule`]).

use crate::rules;

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
    /// Stable code, e.g. [`Rule::UnknownAct`].
    pub rule: Rule,
    /// The field at fault, as the API names it (`acts[1].prescriber`).
    pub field: String,
    /// Readable message.
    pub message: String,
}

impl Refusal {
    pub(super) fn new(
        kind: RefusalKind,
        rule: Rule,
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

    pub(super) fn rule(rule: Rule, field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Rule, rule, field, message)
    }

    pub(super) fn card(rule: Rule, field: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal::new(RefusalKind::Card, rule, field, message)
    }
}

/// A stable rule code a sheet is refused with: this module's and the pricing rules'
/// (`rules::RuleError::code`). [`Rule::as_str`] is the code the API answers (`data.rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// A parameter is missing, malformed or out of range.
    BadRequest,
    /// A staff card (CPE) may prepare but not sign sheets.
    StaffCard,
    /// The CPS is past its end of validity.
    CardExpired,
    /// The card's certificate is revoked, expired, untrusted or does not match its key.
    CertificateRefused,
    /// The Vitale card is on the opposition list.
    VitaleOpposed,
    /// The chosen situation d'exercice may not sign invoices.
    SituationMayNotSign,
    /// A remplaçant's sheet without the practitioner replaced.
    ReplacedMissing,
    /// A practitioner replaced on a sheet whose situation is not a remplacement.
    ReplacedUnexpected,
    /// The replaced practitioner's billing number: wrong key, the remplaçant's own, or not the one
    /// the remplacement situation bills under.
    ReplacedBillingNumberInvalid,
    /// Degraded mode without its reason.
    DegradedReasonMissing,
    /// Degraded mode outside AMO tiers payant.
    DegradedOutsideTiersPayant,
    /// Secured mode without a Vitale card.
    VitaleAbsent,
    /// The NIR's structure is wrong: its shape, sex digit, birth month, département, commune or
    /// order number (the message names the part).
    NirInvalid,
    /// The NIR's key does not match its 13 first characters.
    NirKeyMismatch,
    /// A date of care after today.
    ActDateInFuture,
    /// A date of care before the beneficiary's birth.
    ActDateBeforeBirth,
    /// The sending deadline of a date of care has passed.
    PastDeadline,
    /// No open AMO rights at a date of care.
    RightsClosed,
    /// ALD care for a beneficiary without an open ALD on the card.
    AldNotOpen,
    /// AT/MP cover without a usable date or number.
    AtMpInvalid,
    /// A care path for a profession that has none, or missing for one that has.
    CarePathInvalid,
    /// The law makes the AMO tiers payant compulsory here (CSS, maternity, AT/MP, ALD).
    TiersPayantRequired,
    /// AMC tiers payant asked for without an AMC that offers it.
    AmcTiersPayantUnavailable,
    /// An act on prescription without its prescriber.
    PrescriptionMissing,
    /// A prescriber whose identifier or date is not acceptable.
    PrescriberInvalid,
    /// An excess fee the practitioner's sector does not allow.
    ExcessNotAllowed,
    /// The amounts the request expects differ from fsed's.
    AmountsInconsistent,
    /// No tariff for this code at this date.
    UnknownAct,
    /// A code the tables know, on a date before its first price.
    TariffDateUnknown,
    /// The practitioner's profession may not bill this act.
    ActNotAllowedForProfession,
    /// A modifier the tables do not know, or not for this profession.
    UnknownModifier,
    /// Quantity or coefficient out of range, or an excess fee too high.
    BadAct,
}

impl Rule {
    /// Every rule, in the order of [`ALL_RULES`].
    pub const ALL: &[Rule] = &[
        Rule::BadRequest,
        Rule::StaffCard,
        Rule::CardExpired,
        Rule::CertificateRefused,
        Rule::VitaleOpposed,
        Rule::SituationMayNotSign,
        Rule::ReplacedMissing,
        Rule::ReplacedUnexpected,
        Rule::ReplacedBillingNumberInvalid,
        Rule::DegradedReasonMissing,
        Rule::DegradedOutsideTiersPayant,
        Rule::VitaleAbsent,
        Rule::NirInvalid,
        Rule::NirKeyMismatch,
        Rule::ActDateInFuture,
        Rule::ActDateBeforeBirth,
        Rule::PastDeadline,
        Rule::RightsClosed,
        Rule::AldNotOpen,
        Rule::AtMpInvalid,
        Rule::CarePathInvalid,
        Rule::TiersPayantRequired,
        Rule::AmcTiersPayantUnavailable,
        Rule::PrescriptionMissing,
        Rule::PrescriberInvalid,
        Rule::ExcessNotAllowed,
        Rule::AmountsInconsistent,
        Rule::UnknownAct,
        Rule::TariffDateUnknown,
        Rule::ActNotAllowedForProfession,
        Rule::UnknownModifier,
        Rule::BadAct,
    ];

    /// The stable code, as the API answers it (`data.rule`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::BadRequest => "BAD_REQUEST",
            Rule::StaffCard => "STAFF_CARD",
            Rule::CardExpired => "CARD_EXPIRED",
            Rule::CertificateRefused => "CERTIFICATE_REFUSED",
            Rule::VitaleOpposed => "VITALE_OPPOSED",
            Rule::SituationMayNotSign => "SITUATION_MAY_NOT_SIGN",
            Rule::ReplacedMissing => "REPLACED_MISSING",
            Rule::ReplacedUnexpected => "REPLACED_UNEXPECTED",
            Rule::ReplacedBillingNumberInvalid => "REPLACED_BILLING_NUMBER_INVALID",
            Rule::DegradedReasonMissing => "DEGRADED_REASON_MISSING",
            Rule::DegradedOutsideTiersPayant => "DEGRADED_OUTSIDE_TIERS_PAYANT",
            Rule::VitaleAbsent => "VITALE_ABSENT",
            Rule::NirInvalid => "NIR_INVALID",
            Rule::NirKeyMismatch => "NIR_KEY_MISMATCH",
            Rule::ActDateInFuture => "ACT_DATE_IN_FUTURE",
            Rule::ActDateBeforeBirth => "ACT_DATE_BEFORE_BIRTH",
            Rule::PastDeadline => "PAST_DEADLINE",
            Rule::RightsClosed => "RIGHTS_CLOSED",
            Rule::AldNotOpen => "ALD_NOT_OPEN",
            Rule::AtMpInvalid => "AT_MP_INVALID",
            Rule::CarePathInvalid => "CARE_PATH_INVALID",
            Rule::TiersPayantRequired => "TIERS_PAYANT_REQUIRED",
            Rule::AmcTiersPayantUnavailable => "AMC_TIERS_PAYANT_UNAVAILABLE",
            Rule::PrescriptionMissing => "PRESCRIPTION_MISSING",
            Rule::PrescriberInvalid => "PRESCRIBER_INVALID",
            Rule::ExcessNotAllowed => "EXCESS_NOT_ALLOWED",
            Rule::AmountsInconsistent => "AMOUNTS_INCONSISTENT",
            Rule::UnknownAct => "UNKNOWN_ACT",
            Rule::TariffDateUnknown => "TARIFF_DATE_UNKNOWN",
            Rule::ActNotAllowedForProfession => "ACT_NOT_ALLOWED_FOR_PROFESSION",
            Rule::UnknownModifier => "UNKNOWN_MODIFIER",
            Rule::BadAct => "BAD_ACT",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule serializes as its code.
impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A parameter is missing, malformed or out of range.
pub const BAD_REQUEST: Rule = Rule::BadRequest;
/// A staff card (CPE) may prepare but not sign sheets.
pub const STAFF_CARD: Rule = Rule::StaffCard;
/// The CPS is past its end of validity.
pub const CARD_EXPIRED: Rule = Rule::CardExpired;
/// The card's certificate is revoked, expired, untrusted or does not match its key.
pub const CERTIFICATE_REFUSED: Rule = Rule::CertificateRefused;
/// The Vitale card is on the opposition list.
pub const VITALE_OPPOSED: Rule = Rule::VitaleOpposed;
/// The chosen situation d'exercice may not sign invoices.
pub const SITUATION_MAY_NOT_SIGN: Rule = Rule::SituationMayNotSign;
/// A remplaçant's sheet without the practitioner replaced.
pub const REPLACED_MISSING: Rule = Rule::ReplacedMissing;
/// A practitioner replaced on a sheet whose situation is not a remplacement.
pub const REPLACED_UNEXPECTED: Rule = Rule::ReplacedUnexpected;
/// Degraded mode without its reason.
pub const DEGRADED_REASON_MISSING: Rule = Rule::DegradedReasonMissing;
/// Degraded mode outside AMO tiers payant.
pub const DEGRADED_OUTSIDE_TIERS_PAYANT: Rule = Rule::DegradedOutsideTiersPayant;
/// Secured mode without a Vitale card.
pub const VITALE_ABSENT: Rule = Rule::VitaleAbsent;
/// The replaced practitioner's billing number: wrong key, the remplaçant's own, or not the one
/// the remplacement situation bills under.
pub const REPLACED_BILLING_NUMBER_INVALID: Rule = Rule::ReplacedBillingNumberInvalid;
/// The NIR's key does not match its 13 first characters.
pub const NIR_KEY_MISMATCH: Rule = Rule::NirKeyMismatch;
/// The NIR's structure is wrong: its shape, sex digit, birth month, département, commune or
/// order number (the message names the part).
pub const NIR_INVALID: Rule = Rule::NirInvalid;
/// A date of care after today.
pub const ACT_DATE_IN_FUTURE: Rule = Rule::ActDateInFuture;
/// A date of care before the beneficiary's birth.
pub const ACT_DATE_BEFORE_BIRTH: Rule = Rule::ActDateBeforeBirth;
/// The sending deadline of a date of care has passed.
pub const PAST_DEADLINE: Rule = Rule::PastDeadline;
/// No open AMO rights at a date of care.
pub const RIGHTS_CLOSED: Rule = Rule::RightsClosed;
/// ALD care for a beneficiary without an open ALD on the card.
pub const ALD_NOT_OPEN: Rule = Rule::AldNotOpen;
/// AT/MP cover without a usable date or number.
pub const AT_MP_INVALID: Rule = Rule::AtMpInvalid;
/// A care path for a profession that has none, or missing for one that has.
pub const CARE_PATH_INVALID: Rule = Rule::CarePathInvalid;
/// The law makes the AMO tiers payant compulsory here (CSS, maternity, AT/MP, ALD).
pub const TIERS_PAYANT_REQUIRED: Rule = Rule::TiersPayantRequired;
/// AMC tiers payant asked for without an AMC that offers it.
pub const AMC_TIERS_PAYANT_UNAVAILABLE: Rule = Rule::AmcTiersPayantUnavailable;
/// An act on prescription without its prescriber.
pub const PRESCRIPTION_MISSING: Rule = Rule::PrescriptionMissing;
/// A prescriber whose identifier or date is not acceptable.
pub const PRESCRIBER_INVALID: Rule = Rule::PrescriberInvalid;
/// An excess fee the practitioner's sector does not allow.
pub const EXCESS_NOT_ALLOWED: Rule = Rule::ExcessNotAllowed;
/// The amounts the request expects differ from fsed's.
pub const AMOUNTS_INCONSISTENT: Rule = Rule::AmountsInconsistent;

/// Every rule code a sheet can be refused with: this module's and the pricing rules'.
pub const ALL_RULES: &[&str] = &[
    Rule::BadRequest.as_str(),
    Rule::StaffCard.as_str(),
    Rule::CardExpired.as_str(),
    Rule::CertificateRefused.as_str(),
    Rule::VitaleOpposed.as_str(),
    Rule::SituationMayNotSign.as_str(),
    Rule::ReplacedMissing.as_str(),
    Rule::ReplacedUnexpected.as_str(),
    Rule::ReplacedBillingNumberInvalid.as_str(),
    Rule::DegradedReasonMissing.as_str(),
    Rule::DegradedOutsideTiersPayant.as_str(),
    Rule::VitaleAbsent.as_str(),
    Rule::NirInvalid.as_str(),
    Rule::NirKeyMismatch.as_str(),
    Rule::ActDateInFuture.as_str(),
    Rule::ActDateBeforeBirth.as_str(),
    Rule::PastDeadline.as_str(),
    Rule::RightsClosed.as_str(),
    Rule::AldNotOpen.as_str(),
    Rule::AtMpInvalid.as_str(),
    Rule::CarePathInvalid.as_str(),
    Rule::TiersPayantRequired.as_str(),
    Rule::AmcTiersPayantUnavailable.as_str(),
    Rule::PrescriptionMissing.as_str(),
    Rule::PrescriberInvalid.as_str(),
    Rule::ExcessNotAllowed.as_str(),
    Rule::AmountsInconsistent.as_str(),
    Rule::UnknownAct.as_str(),
    Rule::TariffDateUnknown.as_str(),
    Rule::ActNotAllowedForProfession.as_str(),
    Rule::UnknownModifier.as_str(),
    Rule::BadAct.as_str(),
];

/// The rule code of a pricing error: the one [`rules::RuleError::code`] names.
pub(super) fn pricing_rule(e: &rules::RuleError) -> Rule {
    match e {
        rules::RuleError::UnknownAct { .. } => Rule::UnknownAct,
        rules::RuleError::TariffDateUnknown { .. } => Rule::TariffDateUnknown,
        rules::RuleError::ProfessionNotAllowed { .. } => Rule::ActNotAllowedForProfession,
        rules::RuleError::UnknownModifier { .. } => Rule::UnknownModifier,
        rules::RuleError::BadAct { .. } => Rule::BadAct,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn rules_answer_their_codes_as_before() {
        // The codes the API has always answered, written out: the enum must not change them.
        assert_eq!(Rule::BadRequest.as_str(), "BAD_REQUEST");
        assert_eq!(NIR_KEY_MISMATCH.as_str(), "NIR_KEY_MISMATCH");
        assert_eq!(
            Rule::ActNotAllowedForProfession.to_string(),
            "ACT_NOT_ALLOWED_FOR_PROFESSION"
        );
        assert_eq!(
            serde_json::to_string(&Rule::AmcTiersPayantUnavailable).unwrap(),
            r#""AMC_TIERS_PAYANT_UNAVAILABLE""#
        );
        // 27 codes of `build`, 5 of the pricing rules, each once.
        assert_eq!(ALL_RULES.len(), 27 + 5);
        let mut sorted = ALL_RULES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALL_RULES.len());
        assert!(Rule::ALL
            .iter()
            .zip(ALL_RULES)
            .all(|(r, s)| r.as_str() == *s));
    }

    #[test]
    fn a_pricing_error_keeps_its_code() {
        let date = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        let errors = [
            rules::RuleError::UnknownAct {
                index: 0,
                code: "ZZZ".into(),
                date,
            },
            rules::RuleError::TariffDateUnknown {
                index: 0,
                code: "G".into(),
                date,
                first: date,
            },
            rules::RuleError::ProfessionNotAllowed {
                index: 0,
                code: "G".into(),
                profession: "24".into(),
            },
            rules::RuleError::UnknownModifier {
                index: 0,
                position: 0,
                code: "XX".into(),
                profession: "10".into(),
            },
            rules::RuleError::BadAct {
                index: 0,
                field: "quantity",
                reason: "must be 1 to 99".into(),
            },
        ];
        for e in &errors {
            assert_eq!(pricing_rule(e).as_str(), e.code());
        }
    }
}
