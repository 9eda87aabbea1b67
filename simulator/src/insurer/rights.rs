//! The insurer's rights responder (ADRi): answers [`RightsRequest`]s with the rights of the
//! day of the beneficiaries of the built-in Vitale profiles (the same NIR, birth date and rank
//! as the cards; a profile's `[beneficiaries.online]` block gives rights fresher than the
//! card's), signed as the beneficiary's organism.
//!
//! Over AMQP it consumes the durable queue [`wire::RIGHTS_QUEUE`] and answers on the default
//! exchange to the request's `reply_to` with its `correlation_id`; a request whose deadline
//! (header [`HEADER_DEADLINE_MS`], Unix milliseconds) passed before the answer is ready is
//! dropped. Over the spool it answers `<outbox>/rights/requests/<id>.der` into
//! `<outbox>/rights/answers/<id>.der`. Knobs ([`RightsKnobs`]): latency, outage (answers
//! nothing), stale answers, NIRs answered unknown, a wrong signer or a forged signature.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fse_formats::ack::{ReturnContent, SignedReturn};
use fse_formats::cards::{Amc, Coverage};
use fse_formats::rights::{RightsAnswer, RightsRequest, RightsStatus};
use fse_formats::wire;
use tokio::sync::watch;

use super::spool::write_atomic;
use super::stopped;
use crate::profiles::{Profile, BUILTIN};

/// Header of a rights request: its deadline, Unix milliseconds (the `expiration` property
/// bounds its time in the queue; this bounds the answer's making too).
pub const HEADER_DEADLINE_MS: &str = "x-fsed-deadline-ms";

/// How old a stale answer's `answeredAt` is (`--rights-stale`): 7 days.
pub const STALE_AGE_SECS: i64 = 7 * 86_400;

/// Insurer code that signs answers under `--rights-wrong-signer`.
pub const WRONG_SIGNER: &str = "019999999";

/// Knobs of the rights responder.
#[derive(Debug, Clone, Default)]
pub struct RightsKnobs {
    /// Wait this long before answering each request.
    pub latency: Duration,
    /// Take requests and answer nothing.
    pub outage: bool,
    /// Answer with an `answeredAt` [`STALE_AGE_SECS`] old.
    pub stale: bool,
    /// NIRs (15 characters, or 13 without key) answered unknown.
    pub unknown: Vec<String>,
    /// Sign with another insurer's key and certificate ([`WRONG_SIGNER`]).
    pub wrong_signer: bool,
    /// Sign, then flip a bit of the signature.
    pub bad_signature: bool,
}

/// What the insurer knows of one beneficiary.
#[derive(Debug, Clone)]
struct Known {
    organism: String,
    surname: String,
    given_name: String,
    rights_from: String,
    rights_until: String,
    coverages: Vec<Coverage>,
    amc: Option<Amc>,
}

/// The beneficiaries the insurer knows, by (NIR, birth date, rank), from the built-in Vitale
/// profiles: a profile's online rights when it has some, else its card's.
fn known() -> &'static HashMap<(String, String, u8), Known> {
    static KNOWN: std::sync::OnceLock<HashMap<(String, String, u8), Known>> =
        std::sync::OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut map = HashMap::new();
        for (name, text) in BUILTIN {
            let Ok(Profile::Vitale(v)) = Profile::parse(name, text) else {
                continue;
            };
            let data = v.data();
            for (b, p) in data.beneficiaries.iter().zip(&v.beneficiaries) {
                let online = p.online.as_ref();
                map.entry((b.nir.clone(), b.birth_date.clone(), b.rank))
                    .or_insert_with(|| Known {
                        organism: data.organism.code(),
                        surname: b.surname.clone(),
                        given_name: b.given_name.clone(),
                        rights_from: online.map_or(&b.rights_from, |o| &o.rights_from).clone(),
                        rights_until: online.map_or(&b.rights_until, |o| &o.rights_until).clone(),
                        coverages: online
                            .and_then(|o| o.coverages.clone())
                            .unwrap_or_else(|| b.coverages.clone()),
                        amc: data.amc.clone(),
                    });
            }
        }
        map
    })
}

/// The answer to `request` at `now` (`YYYYMMDDHHMMSSZ`), under `knobs` (outage aside).
pub fn answer_request(
    request: &RightsRequest,
    knobs: &RightsKnobs,
    now: chrono::DateTime<chrono::Utc>,
) -> RightsAnswer {
    let at = if knobs.stale {
        now - chrono::Duration::seconds(STALE_AGE_SECS)
    } else {
        now
    };
    let unknown = knobs
        .unknown
        .iter()
        .any(|n| request.nir.starts_with(n.as_str()) && n.len() >= 13);
    let key = (
        request.nir.clone(),
        request.birth_date.clone(),
        request.rank,
    );
    let mut answer = RightsAnswer {
        request_id: request.request_id.clone(),
        status: RightsStatus::Unknown,
        nir: request.nir.clone(),
        birth_date: request.birth_date.clone(),
        rank: request.rank,
        organism: super::DEFAULT_INSURER.to_string(),
        surname: String::new(),
        given_name: String::new(),
        rights_from: String::new(),
        rights_until: String::new(),
        coverages: vec![],
        amc: None,
        answered_at: at.format("%Y%m%d%H%M%SZ").to_string(),
    };
    match known().get(&key) {
        Some(k) if !unknown => {
            answer.status = RightsStatus::Found;
            answer.organism.clone_from(&k.organism);
            answer.surname.clone_from(&k.surname);
            answer.given_name.clone_from(&k.given_name);
            answer.rights_from.clone_from(&k.rights_from);
            answer.rights_until.clone_from(&k.rights_until);
            answer.coverages.clone_from(&k.coverages);
            answer.amc.clone_from(&k.amc);
        }
        Some(k) => answer.organism.clone_from(&k.organism),
        None => {}
    }
    answer
}

/// The signed answer's DER, as the knobs say it is signed.
pub fn sign_answer(answer: RightsAnswer, knobs: &RightsKnobs) -> Result<Vec<u8>, String> {
    let content = ReturnContent::Rights(Box::new(answer));
    let der = if knobs.wrong_signer {
        super::returns::sign_return_as(content, WRONG_SIGNER)?
    } else {
        super::sign_return(content)?
    };
    if !knobs.bad_signature {
        return Ok(der);
    }
    let mut signed = SignedReturn::from_der(&der).map_err(|e| e.to_string())?;
    signed.signature[0] ^= 0x01;
    signed.to_der().map_err(|e| e.to_string())
}

/// Answers one request's DER: `None` when the knobs say nothing is answered or the request
/// does not decode.
pub fn respond(bytes: &[u8], knobs: &RightsKnobs) -> Option<(String, Vec<u8>)> {
    if knobs.outage {
        return None;
    }
    let request = match RightsRequest::from_der(bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "rights request unreadable: not answered");
            return None;
        }
    };
    let answer = answer_request(&request, knobs, chrono::Utc::now());
    match sign_answer(answer, knobs) {
        Ok(der) => Some((request.request_id, der)),
        Err(e) => {
            tracing::warn!(error = %e, "rights answer not signed");
            None
        }
    }
}

/// The spool's rights folders under `outbox`: (requests, answers).
pub fn spool_dirs(outbox: &Path) -> (PathBuf, PathBuf) {
    let root = outbox.join(wire::SPOOL_RIGHTS_DIR);
    (
        root.join(wire::SPOOL_RIGHTS_REQUESTS),
        root.join(wire::SPOOL_RIGHTS_ANSWERS),
    )
}

/// One pass over the spool's rights requests: each answered into the answers folder (unless
/// the knobs say otherwise) and removed. Gives how many were taken.
pub fn rights_spool_pass(outbox: &Path, knobs: &RightsKnobs) -> std::io::Result<usize> {
    let (requests, answers) = spool_dirs(outbox);
    std::fs::create_dir_all(&requests)?;
    std::fs::create_dir_all(&answers)?;
    let mut taken = 0;
    for entry in std::fs::read_dir(&requests)?.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden
            || path
                .extension()
                .is_none_or(|x| x != wire::SPOOL_RIGHTS_SUFFIX)
        {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        if let Some((id, der)) = respond(&bytes, knobs) {
            let name = format!("{id}.{}", wire::SPOOL_RIGHTS_SUFFIX);
            // The id names a file: only a plain name is written.
            if id.is_empty() || id.contains(['/', '\0']) || id.starts_with('.') {
                tracing::warn!("rights request id is not a file name: not answered");
            } else {
                write_atomic(&answers, &name, &der)?;
            }
        }
        std::fs::remove_file(&path)?;
        taken += 1;
    }
    Ok(taken)
}

/// Serves the spool's rights requests until `stop`: polls every 10 ms, waits the knob's
/// latency before each pass that found requests.
pub async fn run_rights_spool(
    outbox: PathBuf,
    knobs: RightsKnobs,
    mut stop: watch::Receiver<bool>,
) {
    let (requests, _) = spool_dirs(&outbox);
    loop {
        let pending = std::fs::read_dir(&requests)
            .map(|d| d.flatten().next().is_some())
            .unwrap_or(true);
        if pending && !knobs.latency.is_zero() {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                _ = tokio::time::sleep(knobs.latency) => {}
            }
        }
        if pending {
            let (o, k) = (outbox.clone(), knobs.clone());
            match tokio::task::spawn_blocking(move || rights_spool_pass(&o, &k)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(requests = n, "spool rights answered"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "spool rights pass failed"),
                Err(e) => tracing::warn!(error = %e, "spool rights pass panicked"),
            }
        }
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
}

#[cfg(test)]
#[path = "rights_tests.rs"]
mod tests;
