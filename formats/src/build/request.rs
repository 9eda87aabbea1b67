//! Step 1 of a sheet: the request's shape — its acts (`act` or `acts`), each text field's
//! character set and length after its normalisation, and the dates of care.

use std::borrow::Cow;

use chrono::NaiveDate;

use super::{parse_date, Refusal};
use crate::api::{ActRequest, FseCreateParams, MAX_ACTS};
use crate::text::{self, TextError};

/// The acts of a request, `acts` or the single `act`, checked for their number: the check a
/// request meets before the cards are read.
pub fn acts_of(p: &FseCreateParams) -> Result<&[ActRequest], Refusal> {
    let acts: &[ActRequest] = match (&p.act, p.acts.is_empty()) {
        (Some(_), false) => {
            return Err(Refusal::invalid(
                "act",
                "give either `act` or `acts`, not both",
            ))
        }
        (Some(a), true) => std::slice::from_ref(a),
        (None, _) => &p.acts,
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

/// The acts of a request: `acts`, or the single `act` ([`acts_of`], one by one).
pub fn requested_acts(p: &FseCreateParams) -> Result<Vec<&ActRequest>, Refusal> {
    Ok(acts_of(p)?.iter().collect())
}

/// Step 1's text checks: every text field of the request that reaches a sheet or the queue,
/// against its character set and length (`text`, listed in `daemon/API.md`), after its
/// normalisation. Returns the request with its text normalised — borrowed when nothing
/// changed — which is what the sheet carries.
///
/// National identifiers (`replaced.national_id`, `acts[i].prescriber.national_id`), the NIR,
/// dates, the organism and the AT/MP number keep their own checks and refusal codes, later.
pub fn normalise_text(p: &FseCreateParams) -> Result<Cow<'_, FseCreateParams>, Refusal> {
    normalise(p, acts_of(p)?)
}

/// [`normalise_text`] of a request whose acts ([`acts_of`]) are already found.
pub(super) fn normalise<'p>(
    p: &'p FseCreateParams,
    acts: &[ActRequest],
) -> Result<Cow<'p, FseCreateParams>, Refusal> {
    fn at(field: impl Into<String>) -> impl FnOnce(TextError) -> Refusal {
        let field = field.into();
        move |e| Refusal::invalid(field, e.0)
    }
    for (i, a) in acts.iter().enumerate() {
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

/// Step 1's dates of care, one per act: its `date` (`YYYYMMDD`), or today.
pub(super) fn dates(acts: &[ActRequest], today: NaiveDate) -> Result<Vec<NaiveDate>, Refusal> {
    let mut dates = Vec::with_capacity(acts.len());
    for (i, a) in acts.iter().enumerate() {
        let date = match &a.date {
            Some(d) => parse_date(d)
                .ok_or_else(|| Refusal::invalid(format!("acts[{i}].date"), "expected YYYYMMDD"))?,
            None => today,
        };
        dates.push(date);
    }
    Ok(dates)
}
