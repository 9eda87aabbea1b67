//! `presence.challenge`: a challenge for the Vitale app, bound to the CPS holder (the
//! practitioner the app's token must name). See `crate::presence`.

use fse_formats::api::{PresenceChallenge, PresenceChallengeParams};
use serde_json::Value;

use crate::api::params::params;
use crate::context::Context;
use crate::error::ApiError;

use super::to_value;

/// `presence.challenge`: 16 random bytes for the practitioner of the CPS present (or of
/// `cps_serial`), usable until `expires_at` once, by one token.
pub(in crate::api) async fn challenge(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    let PresenceChallengeParams { cps_serial } = params(p)?;
    let snapshot = ctx.cards.snapshot();
    let slot = snapshot
        .cps(cps_serial.as_deref())
        .map_err(|e| ApiError::card("cps", e))?;
    let practitioner = slot
        .cps
        .as_ref()
        .map(|c| c.holder.national_id.clone())
        .ok_or_else(|| ApiError::card("cps", fse_formats::channel::CardError::WrongCard))?;
    let (challenge, expires) = ctx.presence.issue(&practitioner);
    to_value(PresenceChallenge {
        challenge: hex::encode(challenge),
        practitioner_id: practitioner,
        expires_at: chrono::DateTime::from_timestamp(expires, 0)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    })
}
