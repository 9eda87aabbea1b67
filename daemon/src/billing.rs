//! One care sheet from one call: reads what it needs from the CPS and the
//! Vitale card, checks and prices it with `fse_formats::rules`, has the
//! Vitale card sign the proof of presence, and commits it to the queue
//! before answering.

use crate::caller::Caller;
use chrono::{Datelike, Timelike, Utc};
use fse_formats::api::{self, FseCreateParams, FseCreated};
use fse_formats::app::AppToken;
use fse_formats::build::{self, parse_date};
use fse_formats::cards::{CpsData, VitaleData};
use fse_formats::channel::CardError;
use fse_formats::dre::Dre;
use fse_formats::fse::{CareSheet, Mode, Presence};
use fse_formats::pki::CertCheck;
use fse_formats::rules;
use fse_queue::{
    Inserted, NewSheet, ParticipationCaps, PractitionerId, QueueError, SheetRow, SheetState,
    Withheld,
};

use crate::cards::{CardKey, Cards, Snapshot};
use crate::error::ApiError;
use crate::json::JsonText;
use crate::presence::AppTokens;
use crate::remote::{RemoteCard, RemoteCards};
use crate::rights::Rights;
use crate::store::{Store, StoreError};

/// The sheet a stored row's DER holds (the queue checked that it decodes when it read it).
pub fn stored_sheet(row: &SheetRow) -> Result<CareSheet, ApiError> {
    CareSheet::from_der(&row.der)
        .map_err(|e| ApiError::new(api::INTERNAL_ERROR, format!("stored sheet: {e}"), None))
}

/// The API view of a stored sheet: its DER decoded, rendered at this edge.
pub fn created(row: &SheetRow) -> Result<FseCreated, ApiError> {
    let sheet = stored_sheet(row)?;
    Ok(FseCreated {
        id: row.id.get(),
        number: row.number,
        state: row.state.as_str().to_string(),
        sheet,
    })
}

/// `fse.create`'s answer: `FseCreated` written around the sheet's JSON text (serialized once,
/// when the sheet is made, from the sheet in memory; a sheet read back is rendered from its
/// DER).
#[derive(Debug)]
pub struct Created {
    /// Queue id.
    pub id: i64,
    /// Sheet number.
    pub number: u64,
    state: SheetState,
    /// The sheet's JSON text, valid (fsed serialized it).
    sheet: String,
}

impl Created {
    /// The row this very call inserted, with the JSON text of the sheet it was made from.
    fn made(row: SheetRow, json: String) -> Created {
        Created {
            id: row.id.get(),
            number: row.number,
            state: row.state,
            sheet: json,
        }
    }

    /// A row read back (a retry's first sheet): its JSON rendered from its DER.
    fn stored(row: SheetRow) -> Result<Created, ApiError> {
        let json = serde_json::to_string(&stored_sheet(&row)?)
            .map_err(|e| ApiError::new(api::INTERNAL_ERROR, format!("stored sheet: {e}"), None))?;
        Ok(Created {
            id: row.id.get(),
            number: row.number,
            state: row.state,
            sheet: json,
        })
    }

    /// The `FseCreated` object, written around the sheet's text.
    pub fn into_json(self) -> JsonText {
        // The state is one of fixed ASCII words, the numbers are numbers: nothing to escape.
        JsonText::trusted(format!(
            r#"{{"id":{},"number":{},"state":"{}","sheet":{}}}"#,
            self.id,
            self.number,
            self.state.as_str(),
            self.sheet
        ))
    }
}

/// What `fse.create` reads of the cards: the CPS (with a verified PIN) and its certificate
/// check, and, unless `degraded`, the Vitale card and its check when one is present.
type CardsRead<'a> = (
    &'a CpsData,
    Option<&'a CertCheck>,
    Option<&'a VitaleData>,
    Option<&'a CertCheck>,
);

fn read_cards<'a>(
    cards: &'a Snapshot,
    serial: Option<&str>,
    degraded: bool,
) -> Result<CardsRead<'a>, ApiError> {
    let slot = cards.cps(serial).map_err(|e| ApiError::card("cps", e))?;
    if !slot.pin_verified {
        return Err(ApiError::card("cps", CardError::PinRequired));
    }
    let cps = slot
        .cps
        .as_ref()
        .ok_or_else(|| ApiError::card("cps", CardError::WrongCard))?;
    let cps_cert = slot.certificate.as_ref();
    if degraded {
        // Degraded mode: the patient's card is absent, or not to be used.
        return Ok((cps, cps_cert, None, None));
    }
    // No Vitale card: `build` refuses a secured sheet with VITALE_ABSENT.
    Ok(match cards.vitale() {
        Ok(vslot) => (
            cps,
            cps_cert,
            vslot.vitale.as_ref(),
            vslot.certificate.as_ref(),
        ),
        Err(_) => (cps, cps_cert, None, None),
    })
}

/// `fse.create`: checks the request, reads the cards, builds and prices the sheet
/// (`fse_formats::build`), numbers it, has the Vitale card sign the proof of presence (secured
/// mode), derives its DRE and commits it with its participation history before answering.
///
/// An idempotency key is the practitioner's (the CPS holder's national id) and names one
/// request ([`FseCreateParams::request_hash`]): a retry (the same key and request) answers the
/// sheet made first; the same key with another request is refused
/// (`IDEMPOTENCY_KEY_REUSED`); another practitioner's same key is his own. A retry is found
/// where it costs nothing on the way of a new sheet: by the insert, which stores nothing for a
/// key already used, and after any refusal, since the cards or the day may have changed since
/// the first call: then the key is looked up with the practitioner of the CPS in the reader
/// (PIN verified or not), or, with no CPS, among every practitioner's sheets of the same
/// request (answered when there is exactly one). A retry that gets as far as the insert has
/// used a sheet number (a gap, as a restart leaves) and a proof of presence.
///
/// Without a Vitale card here (and not in degraded mode), the first Vitale card present on
/// another fsed (`remote`) is used: its contents and this fsed's check of its certificate for
/// the sheet, and its proof of presence signed over the link (verified here). A link cut
/// during the proof fails the call with `CARD_UNREACHABLE` and nothing is stored.
pub async fn create(
    cards: &Cards,
    remote: &RemoteCards,
    store: &Store,
    rights: &Rights,
    caller: &Caller,
    presence: &AppTokens,
    p: FseCreateParams,
) -> Result<Created, ApiError> {
    if let Some(key) = &p.idempotency_key {
        if key.is_empty() || key.len() > 128 {
            return Err(ApiError::invalid(
                "idempotency_key",
                "must be 1 to 128 characters",
            ));
        }
    }
    // Only a keyed request is compared with another.
    let hash = p.idempotency_key.as_ref().map(|_| p.request_hash());
    let with = With { rights, presence };
    match make(cards, remote, store, &with, caller, &p, hash).await {
        Ok(created) => Ok(created),
        Err(refusal) if refusal.0.code == api::IDEMPOTENCY_KEY_REUSED => Err(refusal),
        Err(refusal) => {
            let Some(key) = p.idempotency_key.clone() else {
                return Err(refusal);
            };
            let practitioner = cards
                .snapshot()
                .cps(p.cps_serial.as_deref())
                .ok()
                .and_then(|slot| slot.cps.as_ref())
                .map(|cps| PractitionerId::new(cps.holder.national_id.as_str()));
            let found = store
                .read(move |q| {
                    q.find_by_idempotency_key(practitioner.as_ref(), &key, hash.as_ref())
                })
                .await?;
            match found {
                Some(row) => Created::stored(row),
                None => Err(refusal),
            }
        }
    }
}

/// A new sheet for `p` (or the one made first with its key, met at the insert); `hash` is the
/// request's, when it has a key.
async fn make(
    cards: &Cards,
    remote: &RemoteCards,
    store: &Store,
    with: &With<'_>,
    caller: &Caller,
    p: &FseCreateParams,
    hash: Option<[u8; 32]>,
) -> Result<Created, ApiError> {
    // The one check a request meets before the cards are read: its acts, found once.
    let request = build::Request::new(p)?;
    let now = Utc::now();
    let today = now.date_naive();
    let degraded = p.degraded.is_some();

    // The card thread publishes what the cards hold after every change: no trip to it here.
    // The request borrows from that snapshot; nothing is copied.
    let snapshot = cards.snapshot();
    // The Vitale app in place of a card: the card in the reader, if any, is not used.
    let with_card = degraded || p.presence.is_some();
    let (cps, cps_cert, mut vitale, mut vitale_cert) =
        read_cards(&snapshot, p.cps_serial.as_deref(), with_card)?;
    let app = shown_app(with.presence, store, cps, p).await?;
    if let Some((_, data)) = &app {
        vitale = Some(data);
    }
    // No Vitale card here: the first one on another fsed, if any.
    let remote_vitale = match (with_card, vitale) {
        (false, None) => remote.vitale(None),
        _ => None,
    };
    if let Some(card) = &remote_vitale {
        vitale = card.vitale.as_ref();
        vitale_cert = card.certificate.as_ref();
    }
    // Card rights closed or old: the rights of the day asked online and laid over a copy of
    // the card data the sheet is priced with (or the card's kept, offline, with why).
    // The Vitale app's rights are always asked online (the app calls for a lookup).
    let online = online_rights(
        with.rights,
        vitale,
        p.beneficiary,
        cps,
        today,
        app.is_some(),
    )
    .await?;
    let rights_origin = online.as_ref().map(|(_, origin)| origin.clone());
    if let Some((data, _)) = &online {
        vitale = Some(data);
    }
    let read = build::CardsRead {
        cps,
        cps_certificate: cps_cert,
        vitale,
        vitale_certificate: vitale_cert,
    };
    // `YYYYMMDDHHMMSSZ`, written directly (chrono's `format` parses its pattern at each call).
    let created_at = format!(
        "{}{:02}{:02}{:02}Z",
        build::ymd(today),
        now.hour(),
        now.minute(),
        now.second()
    );
    let tables = rules::Tables::builtin();
    let caps = ParticipationCaps {
        per_day_per_professional: tables.participation.per_day_per_professional,
        per_year_cents: tables.participation.per_year_cents,
    };
    // The checks up to the beneficiary, in their order; what they found is carried into the
    // pricing, which needs the beneficiary's participation history, read in between.
    let ready = request.prepare(&read, today)?;
    let beneficiary = ready.history_key();
    // The professional of the participation's day cap: the CPS holder, who performs the acts
    // (a remplaçant included).
    let professional = ready.professional();
    let mut prepared = Some(ready);
    // The history read covers this year and the last (older care is past its sending
    // deadline).
    let from = format!("{}0101", today.year() - 1);
    let until = build::ymd(today);
    // The sheet's number, taken on the first try and kept through the others.
    let mut number = None;
    // A sheet is priced on the history read before it; a sheet of the same beneficiary
    // committed in between may take the caps' room: the insert then refuses it (`OverCap`,
    // nothing written) and it is priced again, never withholding more than the caps.
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The participation already withheld for this beneficiary.
        let history = withheld(store, &beneficiary, &from, &until).await?;

        // A price again (after `OverCap`) checks the request again, on the same cards.
        let ready = match prepared.take() {
            Some(ready) => ready,
            None => request.prepare(&read, today)?,
        };
        let mut sheet = ready.make_sheet(&created_at, tables, &|date| {
            build::history_on(&history, professional, date)
        })?;
        record_rights(&mut sheet, rights_origin.as_ref());
        if let Some((token, _)) = &app {
            app_sheet(&mut sheet, token)?;
        }
        let signing = Signing {
            app: app.is_some(),
            vitale,
            remote: remote_vitale.as_ref().map(|card| (remote, card)),
            caps,
            hash,
            beneficiary_key: &beneficiary,
        };
        let (new, json) =
            sign_and_encode(cards, store, caller, p, &mut sheet, &signing, &mut number).await?;
        match store.insert_sheet(new).await {
            Ok(Inserted::New(row)) => {
                tracing::info!(sheet = row.id.get(), number = row.number, "sheet accepted");
                return Ok(Created::made(row, json));
            }
            // A retry, or another request with the same key committed first.
            Ok(Inserted::Existing(row)) => return Created::stored(row),
            Err(StoreError::Queue(QueueError::OverCap(why))) if attempt < MAX_PRICINGS => {
                tracing::debug!(attempt, reason = %why, "sheet priced again on the history as it is now");
                // The history in memory may lack a sheet just committed: read it from the file.
                store.forget_history(&beneficiary);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The Vitale app's token of `p`, accepted for the CPS holder (`crate::presence`), and the
/// beneficiary it vouches for, as a card read would give it.
async fn shown_app(
    presence: &AppTokens,
    store: &Store,
    cps: &CpsData,
    p: &FseCreateParams,
) -> Result<Option<(AppToken, VitaleData)>, ApiError> {
    let Some(shown) = &p.presence else {
        return Ok(None);
    };
    if p.degraded.is_some() {
        return Err(ApiError::invalid(
            "presence",
            "degraded mode has no proof of presence: give degraded or presence, not both",
        ));
    }
    let token = presence
        .accept(store, &cps.holder.national_id, &shown.app)
        .await?;
    let data = token.vitale_data();
    Ok(Some((token, data)))
}

/// A sheet made from a Vitale app's token: mode `app`, the token as its presence, and its
/// rights an online answer's when one was had (`record_rights` put it there), else the ones
/// the app carried, read when the token was made (with why no answer was had, if one was
/// asked for).
fn app_sheet(sheet: &mut CareSheet, token: &AppToken) -> Result<(), ApiError> {
    let looked_up = sheet.rights.take();
    token
        .vouch(sheet)
        .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), Some("presence.app")))?;
    match looked_up {
        Some(r) if r.source == fse_formats::fse::RightsSource::Online => sheet.rights = Some(r),
        Some(r) => {
            if let Some(own) = sheet.rights.as_mut() {
                own.fallback = r.fallback;
            }
        }
        None => {}
    }
    Ok(())
}

/// The card data with the rights of the day and their origin, when the card's call for a
/// lookup ([`Rights::for_sheet`]).
async fn online_rights(
    rights: &Rights,
    vitale: Option<&VitaleData>,
    beneficiary: usize,
    cps: &CpsData,
    today: chrono::NaiveDate,
    app: bool,
) -> Result<Option<(VitaleData, crate::rights::Origin)>, ApiError> {
    match vitale {
        Some(v) => {
            rights
                .for_sheet(v, beneficiary, &cps.holder.national_id, today, app)
                .await
        }
        None => Ok(None),
    }
}

/// Records on the sheet where its rights came from, when a lookup was called for (before the
/// proof of presence, which seals the body).
fn record_rights(sheet: &mut CareSheet, origin: Option<&crate::rights::Origin>) {
    use fse_formats::fse::{RightsOrigin, RightsSource};
    sheet.rights = origin.map(|o| RightsOrigin {
        source: match o.source {
            crate::rights::Source::Card => RightsSource::Card,
            crate::rights::Source::Online => RightsSource::Online,
        },
        read_at: o.read_at.clone(),
        answer_digest: o.answer_digest.clone(),
        fallback: o.fallback.clone(),
    });
}

/// The participation already withheld for `beneficiary` on care from `from` to `until`.
async fn withheld(
    store: &Store,
    beneficiary: &str,
    from: &str,
    until: &str,
) -> Result<Vec<rules::PfEntry>, ApiError> {
    let history = store
        .participation_history(beneficiary, from, until)
        .await?;
    Ok(history
        .into_iter()
        .filter_map(|r| {
            Some(rules::PfEntry {
                date: parse_date(&r.care_date)?,
                professional: r.professional,
                acts: r.acts,
                cents: r.cents,
            })
        })
        .collect())
}

/// How many times one `fse.create` prices its sheet again when sheets of the same beneficiary
/// keep taking the caps' room first.
const MAX_PRICINGS: u32 = 8;

/// The services `fse.create` asks besides the cards and the queue.
struct With<'a> {
    /// Rights online (`[rights]`).
    rights: &'a Rights,
    /// The Vitale app's challenges and tokens.
    presence: &'a AppTokens,
}

/// What a sheet is signed and stored with, besides itself.
struct Signing<'a> {
    /// Its presence is a Vitale app's token (no card signs).
    app: bool,
    /// The Vitale card that signs its proof of presence (secured mode).
    vitale: Option<&'a VitaleData>,
    /// The other fsed holding that Vitale card, when it is not here.
    remote: Option<(&'a RemoteCards, &'a RemoteCard)>,
    /// The participation caps it was priced under.
    caps: ParticipationCaps,
    /// The hash of its request, when it has an idempotency key.
    hash: Option<[u8; 32]>,
    /// The key of its beneficiary's participation history (`build::history_key`).
    beneficiary_key: &'a str,
}

/// Numbers the sheet (once), has the Vitale card sign its proof of presence (secured mode), and
/// encodes what the queue stores, with the caps it was priced under; and the sheet's JSON text,
/// which the answer is written around.
async fn sign_and_encode(
    cards: &Cards,
    store: &Store,
    caller: &Caller,
    p: &FseCreateParams,
    sheet: &mut CareSheet,
    signing: &Signing<'_>,
    number: &mut Option<u64>,
) -> Result<(NewSheet, String), ApiError> {
    let vitale = signing.vitale;
    let practitioner_id = PractitionerId::new(sheet.practitioner.national_id.as_str());
    sheet.number = match *number {
        Some(n) => n,
        None => {
            let n = store.next_sheet_number(&practitioner_id).await?;
            *number = Some(n);
            n
        }
    };
    if let (Mode::Secured, Some(vitale), false) = (sheet.mode, vitale, signing.app) {
        let challenge = sheet
            .presence_challenge()
            .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))?;
        let vitale_serial = vitale.serial.clone();
        let signature = match signing.remote {
            Some((remote, card)) => remote.authenticate(card, &challenge).await?,
            None => {
                cards
                    .run_for(caller, CardKey::Vitale(Some(&vitale.serial)), move |reg| {
                        let slot = reg.vitale().map_err(|e| ApiError::card("vitale", e))?;
                        if slot.vitale.as_ref().map(|v| &v.serial) != Some(&vitale_serial) {
                            return Err(ApiError::card("vitale", CardError::WrongCard));
                        }
                        slot.authenticate(&challenge)
                            .map_err(|e| ApiError::card("vitale", e))
                    })
                    .await??
            }
        };
        sheet.presence = Some(Presence {
            vitale_serial: vitale.serial.clone(),
            public_key: hex::encode(vitale.public_key),
            signature: hex::encode(signature),
        });
    }

    let internal =
        |e: &dyn std::fmt::Display| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None);
    let der = sheet.to_der().map_err(|e| internal(&e))?;
    let dre = Dre::from_sheet(sheet)
        .and_then(|d| d.map(|d| d.to_der()).transpose())
        .map_err(|e| internal(&e))?;
    let json = serde_json::to_string(&sheet).map_err(|e| internal(&e))?;
    // The text `make` wrote: read back digit by digit, without an allocation.
    let created_at = sheet.created_at.parse().map_err(|e| internal(&e))?;
    let new = NewSheet {
        practitioner_id,
        number: sheet.number,
        destination: sheet.beneficiary.organism.clone(),
        idempotency_key: p.idempotency_key.clone(),
        request_hash: signing.hash,
        der,
        created_at,
        dre,
        beneficiary_key: signing.beneficiary_key.to_owned(),
        deadline: Some(sheet.deadline.clone()),
        participation: build::participation_by_date(sheet)
            .into_iter()
            .map(|w| Withheld {
                care_date: build::ymd(w.date),
                acts: w.acts,
                cents: w.cents,
            })
            .collect(),
        participation_caps: Some(signing.caps),
    };
    Ok((new, json))
}
