//! Rights online (ADRi): when a Vitale card's rights are closed or older than
//! `[rights] max_card_age_days`, fsed asks the insurer for the rights of the day over its
//! transport ([`link`]), checks the signed answer ([`fse_formats::rights::check_answer`]),
//! keeps it in the queue's rights cache and lays it over the card data the sheet is priced
//! with. Offline, it uses the card's rights and records why, or refuses (`RIGHTS_STALE`), as
//! configured.
//!
//! The age of a card's rights is today − its `rights_from`: the first day of the rights
//! period the card was last updated with (a card carries no date of its last update; a
//! period that began long ago is the sign of a card not updated since).

pub mod config;
pub mod link;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use fse_formats::ack::SignedReturn;
use fse_formats::api;
use fse_formats::cards::{Beneficiary, VitaleData};
use fse_formats::pki::TrustStore;
use fse_formats::rights::{
    check_answer, lookup_needed, stamp_seconds, LookupReason, RightsAnswer, RightsRequest,
    RightsStatus,
};
use fse_queue::{RightsEntry, RightsSourceKind, Stamp};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::store::Store;
use config::{Offline, RightsSection};
use link::Link;

/// The field errors name.
pub const FIELD: &str = "vitale.rights";

/// Where the rights a sheet was priced on came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Read from the Vitale card.
    Card,
    /// Answered by the insurer online.
    Online,
}

/// The origin of a sheet's rights, when a lookup was called for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// Card or online.
    pub source: Source,
    /// When the rights used were read or answered, `YYYYMMDDHHMMSSZ`.
    pub read_at: String,
    /// Hex SHA-256 of the signed answer's DER (online).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_digest: Option<String>,
    /// Why the online answer was not used (the card's rights used offline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// An online answer fsed believes.
#[derive(Debug, Clone)]
pub struct Online {
    /// The answer.
    pub answer: RightsAnswer,
    /// The `SignedReturn` DER it came in.
    pub der: Vec<u8>,
    /// When it was fetched.
    pub fetched_at: DateTime<Utc>,
}

/// Why no online answer can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The insurer does not know the beneficiary.
    Unknown,
    /// No answer, or one refused: why.
    Unusable(String),
}

/// The rights service of a running fsed.
pub struct Rights {
    cfg: RightsSection,
    link: Option<Link>,
    store: Store,
    trust: Option<Arc<TrustStore>>,
}

/// `YYYYMMDDHHMMSSZ`.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%SZ").to_string()
}

impl Rights {
    /// The service: `link` to the insurer (none: every lookup is offline).
    pub fn new(
        cfg: RightsSection,
        link: Option<Link>,
        store: Store,
        trust: Option<Arc<TrustStore>>,
    ) -> Rights {
        Rights {
            cfg,
            link,
            store,
            trust,
        }
    }

    /// The service of a running fsed: `[rights]` over the configured transport.
    pub fn from_config(
        cfg: &crate::config::Config,
        store: &Store,
        trust: &Option<Arc<TrustStore>>,
    ) -> Rights {
        use crate::config::TransportKind;
        let link = match cfg.transport.kind {
            TransportKind::Spool => Link::spool(&cfg.state_path(&cfg.transport.spool_outbox)),
            // `broker_urls` is never empty (`amqp_url` alone when `amqp_urls` is).
            TransportKind::Amqp => Link::amqp(&cfg.transport.broker_urls()[0]),
        };
        Rights::new(cfg.rights.clone(), Some(link), store.clone(), trust.clone())
    }

    /// The configuration in use.
    pub fn config(&self) -> &RightsSection {
        &self.cfg
    }

    /// The rights of the day of (NIR, birth date, rank): a cached online answer younger than
    /// `max_answer_age_secs` unless `refresh`, else asked online, checked and cached.
    pub async fn online(
        &self,
        nir: &str,
        birth_date: &str,
        rank: u8,
        practitioner: &str,
        refresh: bool,
    ) -> Result<Online, Failure> {
        let trust = self.trust.clone().ok_or_else(|| {
            Failure::Unusable("no trust directory: rights answers cannot be authenticated".into())
        })?;
        if !refresh {
            if let Some(hit) = self.cached(nir, birth_date, rank).await {
                return Ok(hit);
            }
        }
        let link = self
            .link
            .as_ref()
            .ok_or_else(|| Failure::Unusable("no transport to the insurer".into()))?;
        let now = Utc::now();
        let request = RightsRequest {
            request_id: hex::encode(rand::random::<[u8; 16]>()),
            nir: nir.to_string(),
            birth_date: birth_date.to_string(),
            rank,
            practitioner_id: practitioner.to_string(),
            asked_at: stamp(now),
        };
        let der = request
            .to_der()
            .map_err(|e| Failure::Unusable(format!("request: {e}")))?;
        let bytes = link
            .ask(
                &request.request_id,
                der,
                Duration::from_millis(self.cfg.timeout_ms),
            )
            .await
            .map_err(|e| Failure::Unusable(e.to_string()))?;
        let signed = SignedReturn::from_der(&bytes)
            .map_err(|e| Failure::Unusable(format!("answer unreadable: {e}")))?;
        let answer = check_answer(
            &signed,
            &request,
            &trust,
            Utc::now().timestamp(),
            self.cfg.max_answer_age_secs,
        )
        .map_err(|e| Failure::Unusable(format!("answer refused: {e}")))?;
        if answer.status == RightsStatus::Unknown {
            return Err(Failure::Unknown);
        }
        let fetched_at = Utc::now();
        let entry = RightsEntry {
            nir: nir.to_string(),
            birth_date: birth_date.to_string(),
            rank,
            source: RightsSourceKind::Online,
            body: bytes.clone(),
            fetched_at: Stamp::at(fetched_at),
        };
        if let Err(e) = self.store.call(move |q| q.put_rights(&entry)).await {
            tracing::warn!(error = %e, "rights answer not cached");
        }
        Ok(Online {
            answer,
            der: bytes,
            fetched_at,
        })
    }

    /// A cached online answer still young enough. It was authenticated (chain, signature,
    /// signer, echo, age) when it was fetched, and its row's checksum holds, so it is not
    /// verified again: a hit costs a read and a decoding, not a certificate path.
    async fn cached(&self, nir: &str, birth_date: &str, rank: u8) -> Option<Online> {
        let (n, b) = (nir.to_string(), birth_date.to_string());
        let entry = self
            .store
            .read_now(move |q| q.get_rights(&n, &b, rank))
            .await
            .ok()
            .flatten()
            .filter(|e| e.source == RightsSourceKind::Online)?;
        let fetched_at = entry.fetched_at.time();
        let age = (Utc::now() - fetched_at).num_seconds();
        if age < 0 || age.unsigned_abs() > self.cfg.max_answer_age_secs {
            return None;
        }
        let signed = SignedReturn::from_der(&entry.body).ok()?;
        let fse_formats::ack::ReturnContent::Rights(answer) = signed.content else {
            return None;
        };
        let usable = answer.status == RightsStatus::Found
            && answer.nir == nir
            && answer.birth_date == birth_date
            && answer.rank == rank;
        usable.then_some(Online {
            answer: *answer,
            der: entry.body,
            fetched_at,
        })
    }

    /// For a sheet on `vitale`'s beneficiary `index` on `today` (`app`: the Vitale app's data,
    /// whose rights are always asked online): `None` when its card rights
    /// are used as read (no lookup called for, or lookups off); else the card data the sheet
    /// is to be priced with (the online rights laid over, or the card's as read when falling
    /// back) and their origin. `RIGHTS_UNKNOWN`, or `RIGHTS_STALE` when offline and configured
    /// to refuse.
    pub async fn for_sheet(
        &self,
        vitale: &VitaleData,
        index: usize,
        practitioner: &str,
        today: NaiveDate,
        app: bool,
    ) -> Result<Option<(VitaleData, Origin)>, ApiError> {
        if !self.cfg.enabled {
            return Ok(None);
        }
        let Some(b) = vitale.beneficiaries.get(index) else {
            return Ok(None);
        };
        let reason = if app {
            Some(LookupReason::App)
        } else {
            self.needed(b, today)
        };
        let Some(reason) = reason else {
            return Ok(None);
        };
        match self
            .online(&b.nir, &b.birth_date, b.rank, practitioner, false)
            .await
        {
            Ok(online) => {
                let mut data = vitale.clone();
                online.answer.overlay(&mut data, index);
                Ok(Some((data, origin_online(&online))))
            }
            Err(failure) => {
                let fallback = self.fallback(&reason, failure)?;
                Ok(Some((
                    vitale.clone(),
                    Origin {
                        source: Source::Card,
                        read_at: stamp(Utc::now()),
                        answer_digest: None,
                        fallback: Some(fallback),
                    },
                )))
            }
        }
    }

    /// Whether a beneficiary's card rights call for a lookup on `today`.
    pub fn needed(&self, b: &Beneficiary, today: NaiveDate) -> Option<LookupReason> {
        lookup_needed(
            &b.rights_from,
            &b.rights_until,
            today,
            self.cfg.max_card_age_days,
        )
    }

    /// What to record when the card's rights are used for want of an answer, or the error
    /// when the configuration refuses that.
    pub fn fallback(&self, reason: &LookupReason, failure: Failure) -> Result<String, ApiError> {
        match failure {
            Failure::Unknown => Err(unknown()),
            Failure::Unusable(why) => {
                let text = format!("{reason}; {why}");
                tracing::warn!(reason = %text, "rights online not usable");
                match self.cfg.offline {
                    Offline::Card => Ok(text),
                    Offline::Refuse => Err(stale(&text)),
                }
            }
        }
    }
}

/// `RIGHTS_UNKNOWN`.
pub fn unknown() -> ApiError {
    ApiError::new(
        api::RIGHTS_UNKNOWN,
        "the insurer does not know this beneficiary (NIR, birth date, rank)",
        Some(FIELD),
    )
}

/// `RIGHTS_STALE` with its reason.
pub fn stale(reason: &str) -> ApiError {
    ApiError(
        fse_formats::api::ErrorObject::new(
            api::RIGHTS_STALE,
            format!("the card's rights cannot be used and no online answer can: {reason}"),
            Some(FIELD),
        )
        .with("lookup", json!(reason)),
    )
}

/// The origin of rights answered online.
pub fn origin_online(online: &Online) -> Origin {
    Origin {
        source: Source::Online,
        read_at: online.answer.answered_at.clone(),
        answer_digest: Some(hex::encode(Sha256::digest(&online.der))),
        fallback: None,
    }
}

/// The `rights.get` view of rights: where from, when, how old, and the rights themselves.
pub fn view(
    origin: &Origin,
    organism: &str,
    b: &Beneficiary,
    amc: Option<&fse_formats::cards::Amc>,
    age_secs: i64,
) -> Value {
    let mut v = json!({
        "source": origin.source,
        "read_at": origin.read_at,
        "age_secs": age_secs.max(0),
        "organism": organism,
        "rights_from": b.rights_from,
        "rights_until": b.rights_until,
        "coverages": b.coverages,
        "amc": amc,
    });
    if let (Some(obj), Some(d)) = (v.as_object_mut(), &origin.answer_digest) {
        obj.insert("answer_digest".into(), json!(d));
    }
    if let (Some(obj), Some(f)) = (v.as_object_mut(), &origin.fallback) {
        obj.insert("fallback".into(), json!(f));
    }
    v
}

/// Seconds since `read_at` (`YYYYMMDDHHMMSSZ`), 0 when unreadable.
pub fn age_of(read_at: &str) -> i64 {
    stamp_seconds(read_at).map_or(0, |t| Utc::now().timestamp() - t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fse_formats::cards::Organism;

    fn card(from: &str, until: &str) -> VitaleData {
        VitaleData {
            serial: "VIT".into(),
            organism: Organism {
                regime: "01".into(),
                caisse: "131".into(),
                centre: "0001".into(),
            },
            beneficiaries: vec![Beneficiary {
                surname: "NOEL".into(),
                given_name: "Albert".into(),
                birth_date: "19600101".into(),
                nir: "160011305512343".into(),
                rank: 1,
                rights_from: from.into(),
                rights_until: until.into(),
                coverages: vec![],
            }],
            public_key: [0; 32],
            amc: None,
            certificate: None,
        }
    }

    #[tokio::test]
    async fn offline_falls_back_or_refuses_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("q.db")).unwrap();
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        let cfg = RightsSection {
            enabled: true,
            timeout_ms: 50,
            ..RightsSection::default()
        };
        // A spool nobody answers, and a trust store that knows no insurer.
        let rights = Rights::new(
            cfg.clone(),
            Some(Link::spool(&dir.path().join("out"))),
            store.clone(),
            Some(Arc::new(TrustStore::new())),
        );
        // Fresh card rights (from 2026-11-01: 36 days): no lookup, nothing recorded.
        let fresh = card("20261101", "20301231");
        assert!(rights
            .for_sheet(&fresh, 0, "", today, false)
            .await
            .unwrap()
            .is_none());
        // Closed: the card's used, with why.
        let closed = card("20200101", "20231231");
        let (data, origin) = rights
            .for_sheet(&closed, 0, "", today, false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(data, closed);
        assert_eq!(origin.source, Source::Card);
        let why = origin.fallback.unwrap();
        assert!(why.contains("closed on 20231231"), "{why}");
        assert!(why.contains("no answer within 50 ms"), "{why}");
        // The request was taken back: nothing piles up for an absent insurer.
        let requests = dir.path().join("out/rights/requests");
        assert_eq!(std::fs::read_dir(requests).unwrap().count(), 0);
        // Refuse: RIGHTS_STALE naming the field and the reason.
        let refusing = Rights::new(
            RightsSection {
                offline: Offline::Refuse,
                ..cfg
            },
            Some(Link::spool(&dir.path().join("out"))),
            store,
            None,
        );
        let e = refusing
            .for_sheet(&closed, 0, "", today, false)
            .await
            .unwrap_err();
        assert_eq!(e.0.code, api::RIGHTS_STALE);
        let data = e.0.data.unwrap();
        assert_eq!(data["field"], "vitale.rights");
        assert!(
            data["lookup"]
                .as_str()
                .unwrap()
                .contains("no trust directory"),
            "{data}"
        );
        // Off: no lookup at all.
        let off = Rights::new(
            RightsSection::default(),
            None,
            Store::open(&dir.path().join("r.db")).unwrap(),
            None,
        );
        assert!(off
            .for_sheet(&closed, 0, "", today, false)
            .await
            .unwrap()
            .is_none());
    }
}
