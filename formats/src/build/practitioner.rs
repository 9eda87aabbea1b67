//! Steps 2 to 5 of a sheet: the CPS (card type, validity, certificate), the situation
//! d'exercice, the remplaçant and the practitioner replaced, the mode and the Vitale card.

use chrono::NaiveDate;

use super::{
    parse_date, CardsRead, Refusal, CARD_EXPIRED, CERTIFICATE_REFUSED, DEGRADED_REASON_MISSING,
    REPLACED_BILLING_NUMBER_INVALID, REPLACED_MISSING, REPLACED_UNEXPECTED, SITUATION_MAY_NOT_SIGN,
    STAFF_CARD, VITALE_OPPOSED,
};
use crate::api::FseCreateParams;
use crate::cards::{CardType, CpsData, ExerciseMode, Situation, VitaleData};
use crate::fse::Mode;
use crate::ids;
use crate::pki::{CertCheck, CertStatus};

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

/// Step 2: the CPS may sign care sheets — a practitioner's card (not a staff card), within its
/// validity, its certificate not refused.
pub(super) fn check_cps(cards: &CardsRead<'_>, today: NaiveDate) -> Result<(), Refusal> {
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
    Ok(())
}

/// Step 3: the situation d'exercice the request names, which must be allowed to sign invoices.
pub(super) fn situation<'a>(
    p: &FseCreateParams,
    cps: &'a CpsData,
) -> Result<&'a Situation, Refusal> {
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
    Ok(situation)
}

/// Step 4: a remplaçant's sheet names the practitioner replaced (his national id, and the
/// billing number the remplacement situation bills under); no other sheet names one.
pub(super) fn check_replaced(
    p: &FseCreateParams,
    cps: &CpsData,
    situation: &Situation,
) -> Result<(), Refusal> {
    match (situation.mode == ExerciseMode::Remplacant, &p.replaced) {
        (true, None) => Err(Refusal::rule(
            REPLACED_MISSING,
            "replaced",
            "a remplaçant's sheet names the practitioner replaced",
        )),
        (false, Some(_)) => Err(Refusal::rule(
            REPLACED_UNEXPECTED,
            "replaced",
            "this situation d'exercice is not a remplacement",
        )),
        (true, Some(r)) => {
            if !national_id_is_valid(&r.national_id) || r.national_id == cps.holder.national_id {
                return Err(Refusal::rule(
                    REPLACED_MISSING,
                    "replaced.national_id",
                    "the replaced practitioner's RPPS (8 + 11 digits) or ADELI (0 + 9), not the remplaçant's own",
                ));
            }
            check_replaced_billing_number(&r.billing_number, cps, p.situation)
        }
        (false, None) => Ok(()),
    }
}

/// Step 5: the mode (degraded, with its reason, or secured) and, in secured mode, the Vitale
/// card, whose certificate must be neither revoked (opposition) nor untrusted.
pub(super) fn mode_and_vitale<'a>(
    p: &FseCreateParams,
    cards: &CardsRead<'a>,
) -> Result<(Mode, Option<&'a VitaleData>), Refusal> {
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
    Ok((mode, vitale))
}
