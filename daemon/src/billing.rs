//! One care sheet from one call: reads what it needs from the CPS and the
//! Vitale card, checks and prices it with `fse_formats::rules`, has the
//! Vitale card sign the proof of presence, and commits it to the queue
//! before answering.

use chrono::{NaiveDate, Utc};
use fse_formats::api::{FseCreateParams, FseCreated, CARD_NOT_ALLOWED};
use fse_formats::cards::CoverageKind;
use fse_formats::cards::{CardType, CpsData, VitaleData};
use fse_formats::channel::CardError;
use fse_formats::fse::{
    Act, CarePath, CareSheet, Cover, CoverKind, Mode, Presence, SheetBeneficiary,
    SheetPractitioner, TiersPayant,
};
use fse_formats::pki::{CertCheck, CertStatus};
use fse_formats::{calendar, ids, rules};
use fse_queue::{Inserted, NewSheet, SheetRow};

use crate::cards::Cards;
use crate::error::ApiError;
use crate::store::Store;

/// Parses a `YYYYMMDD` date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y%m%d").ok()
}

/// The API view of a stored sheet.
pub fn created(row: &SheetRow) -> Result<FseCreated, ApiError> {
    let sheet: CareSheet = serde_json::from_str(&row.json).map_err(|e| {
        ApiError::new(
            fse_formats::api::INTERNAL_ERROR,
            format!("stored sheet: {e}"),
            None,
        )
    })?;
    Ok(FseCreated {
        id: row.id,
        number: row.number,
        state: row.state.as_str().to_string(),
        sheet,
    })
}

/// `fse.create`.
pub async fn create(
    cards: &Cards,
    store: &Store,
    p: FseCreateParams,
) -> Result<FseCreated, ApiError> {
    if let Some(key) = p.idempotency_key.clone() {
        if key.is_empty() || key.len() > 128 {
            return Err(ApiError::invalid(
                "idempotency_key",
                "must be 1 to 128 characters",
            ));
        }
        if let Some(row) = store.call(move |q| q.find_by_idempotency_key(&key)).await? {
            return created(&row);
        }
    }
    let today = Utc::now().date_naive();
    let date = match &p.act.date {
        Some(d) => {
            parse_date(d).ok_or_else(|| ApiError::invalid("act.date", "expected YYYYMMDD"))?
        }
        None => today,
    };
    if date > today {
        return Err(ApiError::rule("act.date", "date of care is in the future"));
    }
    if p.act.quantity == 0 || p.act.coefficient == 0 {
        return Err(ApiError::invalid(
            "act.quantity",
            "quantity and coefficient must be positive",
        ));
    }

    let serial = p.cps_serial.clone();
    type Certs = (Option<CertCheck>, Option<CertCheck>);
    let (cps, vitale, (cps_cert, vitale_cert)): (CpsData, VitaleData, Certs) = cards
        .run(move |reg| {
            let slot = reg
                .cps(serial.as_deref())
                .map_err(|e| ApiError::card("cps", e))?;
            if !slot.pin_verified {
                return Err(ApiError::card("cps", CardError::PinRequired));
            }
            let cps = slot
                .cps
                .clone()
                .ok_or_else(|| ApiError::card("cps", CardError::WrongCard))?;
            let cps_cert = slot.certificate.clone();
            let vslot = reg.vitale().map_err(|e| ApiError::card("vitale", e))?;
            let vitale = vslot
                .vitale
                .clone()
                .ok_or_else(|| ApiError::card("vitale", CardError::WrongCard))?;
            Ok((cps, vitale, (cps_cert, vslot.certificate.clone())))
        })
        .await??;

    if cps.holder.card_type != CardType::Cps {
        return Err(ApiError::new(
            CARD_NOT_ALLOWED,
            "a staff card (CPE) may prepare but not sign care sheets",
            Some("cps"),
        ));
    }
    if parse_date(&cps.holder.valid_until).is_none_or(|end| end < today) {
        return Err(ApiError::new(
            CARD_NOT_ALLOWED,
            "the CPS has expired",
            Some("cps"),
        ));
    }
    if let Some(why) = cps_cert.as_ref().and_then(CertCheck::refusal) {
        return Err(ApiError::new(
            CARD_NOT_ALLOWED,
            format!("CPS {}: {why}", cps.holder.serial),
            Some("cps"),
        ));
    }
    if let Some(check) = &vitale_cert {
        if let Some(why) = check.refusal() {
            let what = if check.status == CertStatus::Revoked {
                "is on the opposition list"
            } else {
                "is not trusted"
            };
            return Err(ApiError::new(
                CARD_NOT_ALLOWED,
                format!("Vitale card {} {what}: {why}", vitale.serial),
                Some("vitale"),
            ));
        }
    }
    let situation = cps.situations.get(p.situation).ok_or_else(|| {
        ApiError::invalid(
            "situation",
            format!("the CPS has {} situations", cps.situations.len()),
        )
    })?;
    if !situation.may_sign_invoice {
        return Err(ApiError::new(
            CARD_NOT_ALLOWED,
            "this situation d'exercice may not sign invoices",
            Some("situation"),
        ));
    }
    let b = vitale.beneficiaries.get(p.beneficiary).ok_or_else(|| {
        ApiError::invalid(
            "beneficiary",
            format!(
                "the Vitale card has {} beneficiaries",
                vitale.beneficiaries.len()
            ),
        )
    })?;
    if !ids::nir_is_valid(&b.nir) {
        return Err(ApiError::rule("beneficiary.nir", "NIR key mismatch"));
    }
    let birth = parse_date(&b.birth_date).ok_or_else(|| {
        ApiError::rule(
            "beneficiary.birth_date",
            "unreadable birth date on the card",
        )
    })?;
    let rights = (parse_date(&b.rights_from), parse_date(&b.rights_until));
    if !matches!(rights, (Some(from), Some(until)) if from <= date && date <= until) {
        return Err(ApiError::rule(
            "beneficiary.rights",
            "no open AMO rights at the date of care",
        ));
    }
    // What the Vitale card says of the beneficiary on the date of care.
    let active = |kind: CoverageKind| {
        b.coverages.iter().any(|c| {
            c.kind == kind
                && matches!((parse_date(&c.from), parse_date(&c.until)), (Some(f), Some(u)) if f <= date && date <= u)
        })
    };
    let cover = Cover {
        kind: if active(CoverageKind::Maternite) {
            CoverKind::Maternite
        } else {
            CoverKind::Maladie
        },
        // Whether an act is care for the ALD is the practitioner's call (ordonnancier bizone):
        // this version bills outside the ALD unless told otherwise.
        ald: false,
        css: active(CoverageKind::Css),
        at_mp: None,
    };
    let amc = vitale.amc.as_ref().filter(|a| {
        matches!((parse_date(&a.from), parse_date(&a.until)), (Some(f), Some(u)) if f <= date && date <= u)
    });
    // Tiers payant: compulsory for the AMO under CSS, maternity, AT/MP and ALD; the AMC pays
    // directly when its contract says so (or under CSS, which covers both shares).
    let tiers_payant = TiersPayant {
        amo: cover.css || cover.kind != CoverKind::Maladie || cover.ald,
        amc: cover.css || amc.is_some_and(|a| a.tiers_payant && a.direct),
        amc_number: amc.map(|a| a.number.clone()),
    };
    let care_path = if cps.holder.profession == "10" {
        CarePath::Treating
    } else {
        CarePath::NotApplicable
    };
    let line = rules::ActLine {
        code: p.act.code.clone(),
        coefficient: p.act.coefficient,
        quantity: p.act.quantity,
        date,
        excess_cents: 0,
    };
    let ctx = rules::Context {
        birth_date: birth,
        cover: cover.kind,
        ald: cover.ald,
        css: cover.css,
        care_path,
        amc: amc.is_some(),
    };
    let tables = rules::Tables::builtin();
    let priced = rules::price(
        std::slice::from_ref(&line),
        &ctx,
        &cps.holder.profession,
        tables,
        &|_| rules::PfHistory::default(),
    )
    .map_err(|e| ApiError::rule(&e.field(), format!("{}: {e}", e.code())))?;
    let payment = if tiers_payant.amo {
        calendar::Payment::TiersPayant
    } else {
        calendar::Payment::PatientPaid
    };
    let deadline = calendar::sending_deadline(date, payment, calendar::Region::Metropole)
        .ok_or_else(|| ApiError::invalid("act.date", "out of the calendar's range"))?;

    let practitioner_id = cps.holder.national_id.clone();
    let pid = practitioner_id.clone();
    let number = store.call(move |q| q.allocate_sheet_number(&pid)).await?;
    let mut sheet = CareSheet {
        number,
        created_at: Utc::now().format("%Y%m%d%H%M%SZ").to_string(),
        practitioner: SheetPractitioner {
            national_id: practitioner_id.clone(),
            surname: cps.holder.surname.clone(),
            given_name: cps.holder.given_name.clone(),
            profession: cps.holder.profession.clone(),
            specialty: cps.holder.specialty.clone(),
            billing_number: situation.billing_number.clone(),
            sector: situation.sector,
            cps_serial: cps.holder.serial.clone(),
        },
        replaced: None,
        beneficiary: SheetBeneficiary {
            nir: b.nir.clone(),
            surname: b.surname.clone(),
            given_name: b.given_name.clone(),
            birth_date: b.birth_date.clone(),
            rank: b.rank,
            organism: vitale.organism.code(),
        },
        acts: priced
            .acts
            .iter()
            .map(|a| Act {
                code: line.code.clone(),
                coefficient: line.coefficient,
                quantity: line.quantity,
                date: date.format("%Y%m%d").to_string(),
                modifiers: Vec::new(),
                prescriber: None,
                base_cents: a.base_cents,
                excess_cents: line.excess_cents,
                rate: a.rate,
                amo_cents: a.amo_cents,
                pf_cents: a.pf_cents,
            })
            .collect(),
        care_path,
        cover,
        amounts: priced.amounts(&tiers_payant),
        tiers_payant,
        mode: Mode::Secured,
        degraded_reason: None,
        deadline: deadline.format("%Y%m%d").to_string(),
        tables_version: priced.tables_version.clone(),
        presence: None,
    };
    let challenge = sheet
        .presence_challenge()
        .map_err(|e| ApiError::new(fse_formats::api::INTERNAL_ERROR, e.to_string(), None))?;
    let vitale_serial = vitale.serial.clone();
    let signature = cards
        .run(move |reg| {
            let slot = reg.vitale().map_err(|e| ApiError::card("vitale", e))?;
            if slot.vitale.as_ref().map(|v| &v.serial) != Some(&vitale_serial) {
                return Err(ApiError::card("vitale", CardError::WrongCard));
            }
            slot.authenticate(&challenge)
                .map_err(|e| ApiError::card("vitale", e))
        })
        .await??;
    sheet.presence = Some(Presence {
        vitale_serial: vitale.serial.clone(),
        public_key: hex::encode(vitale.public_key),
        signature: hex::encode(signature),
    });

    let der = sheet
        .to_der()
        .map_err(|e| ApiError::new(fse_formats::api::INTERNAL_ERROR, e.to_string(), None))?;
    let json = serde_json::to_string(&sheet)
        .map_err(|e| ApiError::new(fse_formats::api::INTERNAL_ERROR, e.to_string(), None))?;
    let new = NewSheet {
        practitioner_id,
        number,
        destination: vitale.organism.code(),
        idempotency_key: p.idempotency_key.clone(),
        der,
        json,
        created_at: sheet.created_at.clone(),
    };
    let row = match store.call(move |q| q.insert_sheet(&new)).await? {
        Inserted::New(row) | Inserted::Existing(row) => row,
    };
    tracing::info!(sheet = row.id, number = row.number, "sheet accepted");
    created(&row)
}
