//! `rights.get`: a beneficiary's rights of the day, online or from the card, with where they
//! came from and how old they are.

use chrono::Utc;
use fse_formats::cards::Beneficiary;
use fse_formats::ids;
use serde::Deserialize;
use serde_json::Value;

use crate::api::params::params;
use crate::caller::Caller;
use crate::cards::CardKey;
use crate::context::Context;
use crate::error::ApiError;
use crate::rights::{origin_online, stamp, view, Failure, Origin, Source};

/// `rights.get` parameters: a beneficiary by NIR, birth date and rank, or none (the Vitale
/// card's beneficiary `beneficiary`, default 0).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RightsGetParams {
    /// NIR with its key (15 characters).
    nir: Option<String>,
    /// Birth date `YYYYMMDD`.
    birth_date: Option<String>,
    /// Birth rank (default 1).
    rank: Option<u8>,
    /// Index of the beneficiary on the Vitale card (no NIR given).
    beneficiary: Option<usize>,
    /// Ask the insurer even when a cached answer is young enough.
    #[serde(default)]
    refresh: bool,
}

/// `rights.get`.
pub(in crate::api) async fn get(
    ctx: &Context,
    caller: &Caller,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    let p: RightsGetParams = if p.is_none() {
        RightsGetParams::default()
    } else {
        params(p)?
    };
    let practitioner = ctx
        .cards
        .snapshot()
        .cps(None)
        .ok()
        .and_then(|s| s.cps.as_ref())
        .map(|c| c.holder.national_id.clone())
        .unwrap_or_default();
    match p.nir.clone() {
        Some(nir) => by_nir(ctx, &p, nir, &practitioner).await,
        None => from_card(ctx, caller, &p, &practitioner).await,
    }
}

/// Online only: there is no card to fall back to.
async fn by_nir(
    ctx: &Context,
    p: &RightsGetParams,
    nir: String,
    practitioner: &str,
) -> Result<Value, ApiError> {
    if p.beneficiary.is_some() {
        return Err(ApiError::invalid(
            "beneficiary",
            "give either nir, birth_date and rank, or beneficiary (the Vitale card's)",
        ));
    }
    if !ids::nir_is_valid(&nir) {
        return Err(ApiError::invalid(
            "nir",
            "not a NIR with its right key (15 characters)",
        ));
    }
    let birth = p
        .birth_date
        .clone()
        .ok_or_else(|| ApiError::invalid("birth_date", "required with nir (YYYYMMDD)"))?;
    if chrono::NaiveDate::parse_from_str(&birth, "%Y%m%d").is_err() || birth.len() != 8 {
        return Err(ApiError::invalid("birth_date", "not a date YYYYMMDD"));
    }
    let rank = p.rank.unwrap_or(1);
    if rank == 0 {
        return Err(ApiError::invalid("rank", "1 to 255"));
    }
    match ctx
        .rights
        .online(&nir, &birth, rank, practitioner, p.refresh)
        .await
    {
        Ok(online) => Ok(online_view(&online)),
        Err(Failure::Unknown) => Err(crate::rights::unknown()),
        Err(Failure::Unusable(why)) => Err(crate::rights::stale(&why)),
    }
}

fn online_view(online: &crate::rights::Online) -> Value {
    let a = &online.answer;
    let b = Beneficiary {
        surname: a.surname.clone(),
        given_name: a.given_name.clone(),
        birth_date: a.birth_date.clone(),
        nir: a.nir.clone(),
        rank: a.rank,
        rights_from: a.rights_from.clone(),
        rights_until: a.rights_until.clone(),
        coverages: a.coverages.clone(),
    };
    let origin = origin_online(online);
    let age = (Utc::now() - online.fetched_at).num_seconds();
    view(&origin, &a.organism, &b, a.amc.as_ref(), age)
}

/// The Vitale card's beneficiary: its card rights when fresh, else online (or the card's as
/// the configuration says when no answer can be used).
async fn from_card(
    ctx: &Context,
    caller: &Caller,
    p: &RightsGetParams,
    practitioner: &str,
) -> Result<Value, ApiError> {
    if p.birth_date.is_some() || p.rank.is_some() {
        return Err(ApiError::invalid(
            "nir",
            "required with birth_date and rank",
        ));
    }
    let index = p.beneficiary.unwrap_or(0);
    let data = ctx
        .cards
        .run_for(caller, CardKey::Vitale(None), |reg| {
            reg.vitale().map(|s| s.vitale.clone())
        })
        .await?
        .map_err(|e| ApiError::card("vitale", e))?
        .ok_or_else(|| {
            ApiError::new(
                fse_formats::api::CARD_ABSENT,
                "no Vitale card",
                Some("vitale"),
            )
        })?;
    let b = data
        .beneficiaries
        .get(index)
        .ok_or_else(|| ApiError::invalid("beneficiary", "no such beneficiary on the card"))?
        .clone();
    let today = Utc::now().date_naive();
    let card_view = |fallback: Option<String>| {
        let origin = Origin {
            source: Source::Card,
            read_at: stamp(Utc::now()),
            answer_digest: None,
            fallback,
        };
        // The card's rights are as old as the period they open (see `crate::rights`).
        let age = chrono::NaiveDate::parse_from_str(&b.rights_from, "%Y%m%d")
            .map_or(0, |d| (today - d).num_seconds());
        view(&origin, &data.organism.code(), &b, data.amc.as_ref(), age)
    };
    let Some(reason) = ctx.rights.needed(&b, today) else {
        return Ok(card_view(None));
    };
    match ctx
        .rights
        .online(&b.nir, &b.birth_date, b.rank, practitioner, p.refresh)
        .await
    {
        Ok(online) => {
            let mut v = online_view(&online);
            if let Some(obj) = v.as_object_mut() {
                obj.insert("lookup".into(), serde_json::json!(reason.to_string()));
            }
            Ok(v)
        }
        Err(failure) => {
            let fallback = ctx.rights.fallback(&reason, failure)?;
            Ok(card_view(Some(fallback)))
        }
    }
}

/// For `vitale.read`: each beneficiary whose card rights are closed or old, looked up online
/// at once (concurrently), as `rights.get` would show it with its `beneficiary` index; an
/// error (unknown, or offline with `offline = "refuse"`) in its place as `error`. `None` when
/// lookups are off or none is called for.
pub(in crate::api) async fn for_vitale_read(
    ctx: &Context,
    data: &fse_formats::cards::VitaleData,
) -> Option<Value> {
    if !ctx.rights.config().enabled {
        return None;
    }
    let today = Utc::now().date_naive();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, b) in data.beneficiaries.iter().enumerate() {
        let Some(reason) = ctx.rights.needed(b, today) else {
            continue;
        };
        let (rights, b) = (std::sync::Arc::clone(&ctx.rights), b.clone());
        let (organism, amc) = (data.organism.code(), data.amc.clone());
        tasks.spawn(async move {
            let got = rights
                .online(&b.nir, &b.birth_date, b.rank, "", false)
                .await;
            let mut v = match got {
                Ok(online) => online_view(&online),
                Err(failure) => match rights.fallback(&reason, failure) {
                    Ok(fallback) => {
                        let origin = Origin {
                            source: Source::Card,
                            read_at: stamp(Utc::now()),
                            answer_digest: None,
                            fallback: Some(fallback),
                        };
                        view(&origin, &organism, &b, amc.as_ref(), 0)
                    }
                    Err(e) => serde_json::json!({ "error": e.0 }),
                },
            };
            if let Some(obj) = v.as_object_mut() {
                obj.insert("beneficiary".into(), serde_json::json!(i));
                obj.insert("lookup".into(), serde_json::json!(reason.to_string()));
            }
            (i, v)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(entry) = r {
            out.push(entry);
        }
    }
    if out.is_empty() {
        return None;
    }
    out.sort_by_key(|(i, _)| *i);
    Some(Value::Array(out.into_iter().map(|(_, v)| v).collect()))
}
