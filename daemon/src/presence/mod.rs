//! The Vitale app (ApCV) in place of the card's proof of presence: `presence.challenge`
//! hands out challenges bound to a practitioner ([`Challenges`], in memory, bounded, each
//! living `[app] challenge_ttl_secs`), and `fse.create` with `presence.app` accepts a token
//! ([`AppTokens::accept`]) when it is new (the queue keeps every used token's digest, so a
//! replay is refused even after a restart), verifies under the trust directory
//! ([`fse_formats::app::AppToken::verify`]) and names a challenge issued here for the CPS
//! holder. An accepted token's challenge is spent.

pub mod config;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fse_formats::api::{self, ErrorObject};
use fse_formats::app::{AppRefusal, AppToken, Expected};
use fse_formats::pki::TrustStore;
use fse_queue::PractitionerId;
use serde_json::json;

use crate::error::ApiError;
use crate::store::Store;

/// Most challenges held at once; the oldest goes when a new one would exceed it.
pub const MAX_CHALLENGES: usize = 1024;

/// The challenges handed out and not yet spent or expired.
#[derive(Debug, Default)]
pub struct Challenges {
    live: HashMap<[u8; 16], (String, Instant)>,
    order: VecDeque<[u8; 16]>,
}

impl Challenges {
    /// Forgets the expired ones (and any beyond the bound, oldest first).
    fn prune(&mut self, now: Instant, room: usize) {
        if self.order.len() > 2 * MAX_CHALLENGES {
            // Spent ones behind a live one at the front.
            let live = &self.live;
            self.order.retain(|c| live.contains_key(c));
        }
        while let Some(first) = self.order.front().copied() {
            let gone = self.live.get(&first).is_none_or(|(_, until)| *until <= now);
            if gone || self.live.len() > room {
                self.order.pop_front();
                self.live.remove(&first);
            } else {
                break;
            }
        }
    }

    /// A new challenge for `practitioner`, usable until `now + ttl`.
    pub fn issue(&mut self, practitioner: &str, now: Instant, ttl: Duration) -> [u8; 16] {
        self.prune(now, MAX_CHALLENGES - 1);
        let challenge: [u8; 16] = rand::random();
        self.live
            .insert(challenge, (practitioner.to_string(), now + ttl));
        self.order.push_back(challenge);
        challenge
    }

    /// Whether `challenge` was issued for `practitioner` and is still live.
    pub fn is_live(&self, challenge: &[u8; 16], practitioner: &str, now: Instant) -> bool {
        self.live
            .get(challenge)
            .is_some_and(|(p, until)| p == practitioner && *until > now)
    }

    /// Spends `challenge`: it is no longer accepted.
    pub fn spend(&mut self, challenge: &[u8; 16]) {
        self.live.remove(challenge);
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// What `presence.challenge` and `fse.create` share: the trust store, the settings, the
/// challenges.
#[derive(Debug)]
pub struct AppTokens {
    trust: Option<Arc<TrustStore>>,
    ttl: Duration,
    max_lifetime_secs: i64,
    challenges: Mutex<Challenges>,
}

impl Default for AppTokens {
    fn default() -> Self {
        AppTokens::new(None, &config::AppSection::default())
    }
}

/// The `APP_TOKEN_REFUSED` error of a refusal.
pub fn refused(r: &AppRefusal) -> ApiError {
    ApiError(
        ErrorObject::new(
            api::APP_TOKEN_REFUSED,
            format!("Vitale app token refused: {r}"),
            Some("presence.app"),
        )
        .with("reason", json!(r.reason())),
    )
}

impl AppTokens {
    /// Over `trust` (none: every token is `untrusted`) with the `[app]` settings.
    pub fn new(trust: Option<Arc<TrustStore>>, cfg: &config::AppSection) -> AppTokens {
        AppTokens {
            trust,
            ttl: Duration::from_secs(cfg.challenge_ttl_secs),
            max_lifetime_secs: i64::try_from(cfg.max_token_lifetime_secs).unwrap_or(i64::MAX),
            challenges: Mutex::new(Challenges::default()),
        }
    }

    fn challenges(&self) -> std::sync::MutexGuard<'_, Challenges> {
        // A panic while holding it left a consistent map (each change is one call).
        self.challenges.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new challenge for `practitioner`, and the Unix second it expires at.
    pub fn issue(&self, practitioner: &str) -> ([u8; 16], i64) {
        let c = self
            .challenges()
            .issue(practitioner, Instant::now(), self.ttl);
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        (c, chrono::Utc::now().timestamp().saturating_add(ttl))
    }

    /// Accepts the token `text` shown to `practitioner` (the CPS holder's national id): new
    /// (not in the queue's used tokens), verified, bound to a live challenge issued here for
    /// `practitioner`; then records it used (before any sheet is made from it) and spends its
    /// challenge. Every refusal is `APP_TOKEN_REFUSED` with its reason.
    pub async fn accept(
        &self,
        store: &Store,
        practitioner: &str,
        text: &str,
    ) -> Result<AppToken, ApiError> {
        let token = AppToken::from_text(text).map_err(|r| refused(&r))?;
        let digest = token
            .digest()
            .map_err(|e| refused(&AppRefusal::Malformed(e.to_string())))?;
        let seen = digest.clone();
        if store
            .read(move |q| q.app_token_used(&seen))
            .await?
            .is_some()
        {
            return Err(refused(&AppRefusal::Replayed));
        }
        self.verify(&token, practitioner).map_err(|r| refused(&r))?;
        let pid = PractitionerId::new(practitioner);
        let claimed = digest.clone();
        if !store
            .call(move |q| q.claim_app_token(&claimed, &pid))
            .await?
        {
            // Another request with the same token got there first.
            return Err(refused(&AppRefusal::Replayed));
        }
        self.challenges().spend(&token.body.challenge);
        tracing::info!(app = %token.body.app_serial, token = %digest, "Vitale app token accepted");
        Ok(token)
    }

    /// [`AppToken::verify`] with this fsed's trust store, now, and the challenge when it is
    /// one issued here for `practitioner` and still live.
    pub fn verify(&self, token: &AppToken, practitioner: &str) -> Result<(), AppRefusal> {
        let trust = self.trust.as_deref().ok_or_else(|| {
            AppRefusal::Untrusted("no trust directory configured: no Vitale app is trusted".into())
        })?;
        let live = self
            .challenges()
            .is_live(&token.body.challenge, practitioner, Instant::now());
        token.verify(
            trust,
            &Expected {
                practitioner_id: practitioner,
                challenge: live.then_some(&token.body.challenge),
                now: chrono::Utc::now().timestamp(),
                max_lifetime_secs: self.max_lifetime_secs,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_bound_expire_are_spent_and_bounded() {
        let mut c = Challenges::default();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(300);
        let a = c.issue("810001234567", t0, ttl);
        assert!(c.is_live(&a, "810001234567", t0));
        assert!(
            !c.is_live(&a, "810009999999", t0),
            "bound to its practitioner"
        );
        // 300 s later it is over.
        assert!(!c.is_live(&a, "810001234567", t0 + ttl));
        c.spend(&a);
        assert!(!c.is_live(&a, "810001234567", t0));
        // 1024 held at most: the 1025th pushes out the first.
        let first = c.issue("p", t0, ttl);
        for _ in 1..MAX_CHALLENGES {
            c.issue("p", t0, ttl);
        }
        assert_eq!(c.len(), MAX_CHALLENGES);
        assert!(c.is_live(&first, "p", t0));
        c.issue("p", t0, ttl);
        assert_eq!(c.len(), MAX_CHALLENGES);
        assert!(!c.is_live(&first, "p", t0));
        // Expired ones go when the next is issued.
        c.issue("p", t0 + ttl, ttl);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_refusal_names_its_field_and_reason() {
        let e = refused(&AppRefusal::Replayed).0;
        assert_eq!(e.code, api::APP_TOKEN_REFUSED);
        let data = e.data.unwrap();
        assert_eq!(data["field"], "presence.app");
        assert_eq!(data["reason"], "replayed");
        assert_eq!(data["name"], "APP_TOKEN_REFUSED");
    }
}
