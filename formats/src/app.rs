//! The Vitale app (ApCV): the patient's phone stands in for the Vitale card. It holds one
//! beneficiary's identity and rights (as at its last sync) and an Ed25519 key certified by a
//! Vitale-app CA; asked by fsed for a challenge bound to a practitioner
//! (`presence.challenge`), it shows a QR code carrying a short-lived [`AppToken`] signed with
//! that key: the proof that the patient was there, in place of the card's.
//!
//! Per `formats/asn1/fsed.asn` (`AppToken`, `AppTokenBody`). The QR code carries the text form
//! [`AppToken::to_text`]: `FSEDAPP1:` then base64url (RFC 4648 §5, no padding) of the DER.
//!
//! [`AppToken::verify`] is a pure function of the token, a trust store and the expected
//! binding (practitioner, challenge, now): fsed and the insurer simulator both call it.
//! Single use is fsed's to keep (it records each token's digest); it reports `replayed`.

use asn1_rs::{DerSequence, FromDer, OctetString, Tagged, ToDer, ToDerSequence};
use sha2::{Digest, Sha256};

use crate::cards::{Beneficiary, Organism, VitaleData};
use crate::der::{bytes_n, DerError};
use crate::pki::TrustStore;

/// Version of the app token encoding.
pub const APP_TOKEN_VERSION: u32 = 1;

/// Prefix of the text form of a token (what the QR code says).
pub const TEXT_PREFIX: &str = "FSEDAPP1:";

/// Longest a token may live (`expiresAt − issuedAt`) unless configured otherwise: 5 minutes.
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 300;

/// How far ahead of the verifier's clock a token's `issuedAt` may be (phones' clocks drift).
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Longest text form accepted (a token is about 700 bytes of DER: ~950 characters).
pub const MAX_TEXT_LEN: usize = 8192;

/// What the app vouches for: one beneficiary, the challenge and practitioner it is bound to,
/// its lifetime. Dates `YYYYMMDD`, times `YYYYMMDDHHMMSSZ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTokenBody {
    /// The app installation's serial: its certificate's subject `serialNumber`.
    pub app_serial: String,
    /// NIR with its key (15 characters).
    pub nir: String,
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// Birth date `YYYYMMDD`.
    pub birth_date: String,
    /// Birth rank.
    pub rank: u8,
    /// AMO organism code, 9 digits (régime 2, caisse 3, centre 4).
    pub organism: String,
    /// First day of open rights at the app's last sync, `YYYYMMDD`.
    pub rights_from: String,
    /// Last day of open rights at the app's last sync, `YYYYMMDD`.
    pub rights_until: String,
    /// The challenge fsed gave (`presence.challenge`).
    pub challenge: [u8; 16],
    /// National id of the practitioner the token is shown to.
    pub practitioner_id: String,
    /// When the app made the token, `YYYYMMDDHHMMSSZ`.
    pub issued_at: String,
    /// Last instant it may be used, `YYYYMMDDHHMMSSZ`.
    pub expires_at: String,
}

/// A presence token as the QR code carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppToken {
    /// What is signed.
    pub body: AppTokenBody,
    /// Ed25519 signature by the app's key over the DER of `body`.
    pub signature: [u8; 64],
    /// The app's X.509 certificate, DER.
    pub app_certificate: Vec<u8>,
}

/// Why a token is refused. [`AppRefusal::reason`] is the stable word the API reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppRefusal {
    /// Not a token: bad text form, DER, or field.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The certificate is not a trusted Vitale app's, or does not name the token's app.
    #[error("untrusted: {0}")]
    Untrusted(String),
    /// The signature is not the certificate key's over the body.
    #[error("bad_signature: not made by the app certificate's key over this token")]
    BadSignature,
    /// Past `expiresAt`, issued in the future, or living longer than allowed.
    #[error("expired: {0}")]
    Expired(String),
    /// Bound to another practitioner.
    #[error("wrong_practitioner: token for {found}, expected {expected}")]
    WrongPractitioner {
        /// The practitioner the token names.
        found: String,
        /// The one it was shown to.
        expected: String,
    },
    /// Its challenge is not one the verifier issued (or it expired, or was used).
    #[error("unknown_challenge: not a challenge issued for this practitioner")]
    UnknownChallenge,
    /// Already used once (the verifier keeps the digests of used tokens).
    #[error("replayed: this token was used already")]
    Replayed,
}

impl AppRefusal {
    /// The stable reason word: `malformed`, `untrusted`, `bad_signature`, `expired`,
    /// `wrong_practitioner`, `unknown_challenge`, `replayed`.
    pub fn reason(&self) -> &'static str {
        match self {
            AppRefusal::Malformed(_) => "malformed",
            AppRefusal::Untrusted(_) => "untrusted",
            AppRefusal::BadSignature => "bad_signature",
            AppRefusal::Expired(_) => "expired",
            AppRefusal::WrongPractitioner { .. } => "wrong_practitioner",
            AppRefusal::UnknownChallenge => "unknown_challenge",
            AppRefusal::Replayed => "replayed",
        }
    }
}

/// What a token must be bound to, to be accepted.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// National id of the practitioner it must name.
    pub practitioner_id: &'a str,
    /// The challenge it must carry: the one the verifier issued, `None` when the token's is
    /// none the verifier knows (then `unknown_challenge` once everything else holds).
    pub challenge: Option<&'a [u8; 16]>,
    /// Now, Unix seconds.
    pub now: i64,
    /// Longest `expiresAt − issuedAt` accepted, seconds.
    pub max_lifetime_secs: i64,
}

#[derive(DerSequence, ToDerSequence)]
struct BodyDer<'a> {
    version: u32,
    app_serial: String,
    nir: String,
    surname: String,
    given_name: String,
    birth_date: String,
    rank: u32,
    organism: String,
    rights_from: String,
    rights_until: String,
    challenge: OctetString<'a>,
    practitioner_id: String,
    issued_at: String,
    expires_at: String,
}

#[derive(DerSequence, ToDerSequence)]
struct TokenDer<'a> {
    body: BodyDer<'a>,
    signature: OctetString<'a>,
    app_certificate: OctetString<'a>,
}

impl AppTokenBody {
    fn der(&self) -> BodyDer<'_> {
        BodyDer {
            version: APP_TOKEN_VERSION,
            app_serial: self.app_serial.clone(),
            nir: self.nir.clone(),
            surname: self.surname.clone(),
            given_name: self.given_name.clone(),
            birth_date: self.birth_date.clone(),
            rank: u32::from(self.rank),
            organism: self.organism.clone(),
            rights_from: self.rights_from.clone(),
            rights_until: self.rights_until.clone(),
            challenge: OctetString::new(&self.challenge),
            practitioner_id: self.practitioner_id.clone(),
            issued_at: self.issued_at.clone(),
            expires_at: self.expires_at.clone(),
        }
    }

    /// DER of the body: the bytes the app signs.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        Ok(self.der().to_der_vec()?)
    }

    fn from_der_value(b: BodyDer<'_>) -> Result<AppTokenBody, DerError> {
        if b.version != APP_TOKEN_VERSION {
            return Err(DerError::field("version", "unsupported app token version"));
        }
        let body = AppTokenBody {
            app_serial: b.app_serial,
            nir: b.nir,
            surname: b.surname,
            given_name: b.given_name,
            birth_date: b.birth_date,
            rank: u8::try_from(b.rank).map_err(|_| DerError::field("rank", "above 255"))?,
            organism: b.organism,
            rights_from: b.rights_from,
            rights_until: b.rights_until,
            challenge: bytes_n(b.challenge.as_ref(), "challenge")?,
            practitioner_id: b.practitioner_id,
            issued_at: b.issued_at,
            expires_at: b.expires_at,
        };
        body.check_fields()?;
        Ok(body)
    }

    /// The shapes a decoder insists on: digits where digits go, times that parse.
    fn check_fields(&self) -> Result<(), DerError> {
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let checks: [(bool, &'static str, &'static str); 8] = [
            (!self.app_serial.is_empty(), "app_serial", "empty"),
            (self.nir.len() == 15, "nir", "not 15 characters"),
            (digits(&self.organism, 9), "organism", "not 9 digits"),
            (digits(&self.birth_date, 8), "birth_date", "not YYYYMMDD"),
            (digits(&self.rights_from, 8), "rights_from", "not YYYYMMDD"),
            (
                digits(&self.rights_until, 8),
                "rights_until",
                "not YYYYMMDD",
            ),
            (
                parse_time(&self.issued_at).is_some(),
                "issued_at",
                "not YYYYMMDDHHMMSSZ",
            ),
            (
                parse_time(&self.expires_at).is_some(),
                "expires_at",
                "not YYYYMMDDHHMMSSZ",
            ),
        ];
        match checks.iter().find(|(ok, _, _)| !ok) {
            Some((_, field, reason)) => Err(DerError::field(field, reason)),
            None => Ok(()),
        }
    }

    /// The AMO organism named by `organism`.
    pub fn organism(&self) -> Organism {
        let o = &self.organism;
        let part = |r: std::ops::Range<usize>| o.get(r).unwrap_or_default().to_string();
        Organism {
            regime: part(0..2),
            caisse: part(2..5),
            centre: part(5..9),
        }
    }
}

/// Unix seconds of a `YYYYMMDDHHMMSSZ` time.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%SZ")
        .ok()
        .filter(|_| s.len() == 15)
        .map(|t| t.and_utc().timestamp())
}

/// `YYYYMMDDHHMMSSZ` of Unix seconds (the epoch for one out of range).
pub fn format_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y%m%d%H%M%SZ")
        .to_string()
}

impl AppToken {
    /// Signs `body` with the app's `key`, carrying its certificate (DER).
    pub fn sign(
        body: AppTokenBody,
        key: &ed25519_dalek::SigningKey,
        app_certificate: Vec<u8>,
    ) -> Result<AppToken, DerError> {
        use ed25519_dalek::Signer;
        let signature = key.sign(&body.to_der()?).to_bytes();
        Ok(AppToken {
            body,
            signature,
            app_certificate,
        })
    }

    /// DER encoding.
    pub fn to_der(&self) -> Result<Vec<u8>, DerError> {
        Ok(TokenDer {
            body: self.body.der(),
            signature: OctetString::new(&self.signature),
            app_certificate: OctetString::new(&self.app_certificate),
        }
        .to_der_vec()?)
    }

    /// DER decoding, strict: canonical DER only, fields in shape (no verification: see
    /// [`AppToken::verify`]).
    pub fn from_der(bytes: &[u8]) -> Result<AppToken, DerError> {
        crate::der::check_structure(bytes)?;
        let (rest, t) = TokenDer::from_der(bytes)?;
        if !rest.is_empty() {
            return Err(DerError::field("app_token", "trailing bytes"));
        }
        let token = AppToken {
            body: AppTokenBody::from_der_value(t.body)?,
            signature: bytes_n(t.signature.as_ref(), "signature")?,
            app_certificate: t.app_certificate.as_ref().to_vec(),
        };
        crate::der::require_canonical(bytes, &token.to_der()?, "app_token")?;
        Ok(token)
    }

    /// The text form the QR code carries: [`TEXT_PREFIX`] then base64url without padding of
    /// the DER.
    pub fn to_text(&self) -> Result<String, DerError> {
        Ok(format!("{TEXT_PREFIX}{}", base64url(&self.to_der()?)))
    }

    /// Reads the text form (surrounding white space ignored), strictly: the prefix, base64url
    /// without padding, canonical DER.
    pub fn from_text(text: &str) -> Result<AppToken, AppRefusal> {
        let text = text.trim();
        if text.len() > MAX_TEXT_LEN {
            return Err(AppRefusal::Malformed("text form too long".into()));
        }
        let b64 = text
            .strip_prefix(TEXT_PREFIX)
            .ok_or_else(|| AppRefusal::Malformed(format!("does not start with {TEXT_PREFIX}")))?;
        let der = from_base64url(b64)
            .ok_or_else(|| AppRefusal::Malformed("not base64url without padding".into()))?;
        AppToken::from_der(&der).map_err(|e| AppRefusal::Malformed(e.to_string()))
    }

    /// SHA-256 of the DER of its body (what the app signed), hex: what a verifier records to
    /// refuse the token a second time. The body alone, so that the same signed body carried
    /// with another certificate of the same key is the same token.
    pub fn digest(&self) -> Result<String, DerError> {
        Ok(hex::encode(Sha256::digest(self.body.to_der()?)))
    }

    /// Verifies the token: its certificate is a Vitale app's under `trust` at `expected.now`
    /// ([`TrustStore::check_app`]) naming `app_serial`; the signature is the certificate key's
    /// over the body; `expiresAt ≥ now`, `issuedAt ≤ now` (give or take [`CLOCK_SKEW_SECS`]),
    /// `expiresAt − issuedAt ≤ max_lifetime_secs`; the practitioner and the challenge are the
    /// expected ones. The first failing check, in that order, is the refusal.
    pub fn verify(&self, trust: &TrustStore, expected: &Expected<'_>) -> Result<(), AppRefusal> {
        let b = &self.body;
        let (serial, key) = trust
            .check_app(&self.app_certificate, expected.now)
            .map_err(AppRefusal::Untrusted)?;
        if serial != b.app_serial {
            return Err(AppRefusal::Untrusted(format!(
                "the certificate names app {serial}, the token {}",
                b.app_serial
            )));
        }
        let body = b
            .to_der()
            .map_err(|e| AppRefusal::Malformed(e.to_string()))?;
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .ok()
            .filter(|k| k.verify_strict(&body, &signature).is_ok())
            .ok_or(AppRefusal::BadSignature)?;
        self.check_times(expected)?;
        if b.practitioner_id != expected.practitioner_id {
            return Err(AppRefusal::WrongPractitioner {
                found: b.practitioner_id.clone(),
                expected: expected.practitioner_id.to_string(),
            });
        }
        match expected.challenge {
            Some(c) if *c == b.challenge => Ok(()),
            _ => Err(AppRefusal::UnknownChallenge),
        }
    }

    fn check_times(&self, expected: &Expected<'_>) -> Result<(), AppRefusal> {
        let b = &self.body;
        let malformed = |f: &str| AppRefusal::Malformed(format!("{f}: not YYYYMMDDHHMMSSZ"));
        let issued = parse_time(&b.issued_at).ok_or_else(|| malformed("issued_at"))?;
        let expires = parse_time(&b.expires_at).ok_or_else(|| malformed("expires_at"))?;
        if expires < expected.now {
            return Err(AppRefusal::Expired(format!(
                "expired at {}, now {}",
                b.expires_at,
                format_time(expected.now)
            )));
        }
        if issued > expected.now + CLOCK_SKEW_SECS {
            return Err(AppRefusal::Expired(format!(
                "issued at {}, in the future (now {})",
                b.issued_at,
                format_time(expected.now)
            )));
        }
        if expires < issued || expires - issued > expected.max_lifetime_secs {
            return Err(AppRefusal::Expired(format!(
                "lives {} s, at most {} s allowed",
                expires - issued,
                expected.max_lifetime_secs
            )));
        }
        Ok(())
    }

    /// The beneficiary the token vouches for, as a card read would give it, for
    /// [`crate::build`]: the app's serial and key in place of a card's, one beneficiary with
    /// the rights period the app carried (no coverage periods, no AMC).
    pub fn vitale_data(&self) -> VitaleData {
        let b = &self.body;
        let public_key = x509_parser::parse_x509_certificate(&self.app_certificate)
            .ok()
            .and_then(|(_, c)| {
                <[u8; 32]>::try_from(c.public_key().subject_public_key.data.as_ref()).ok()
            })
            .unwrap_or([0; 32]);
        VitaleData {
            serial: b.app_serial.clone(),
            organism: b.organism(),
            beneficiaries: vec![Beneficiary {
                surname: b.surname.clone(),
                given_name: b.given_name.clone(),
                birth_date: b.birth_date.clone(),
                nir: b.nir.clone(),
                rank: b.rank,
                rights_from: b.rights_from.clone(),
                rights_until: b.rights_until.clone(),
                coverages: Vec::new(),
            }],
            public_key,
            amc: None,
            certificate: Some(self.app_certificate.clone()),
        }
    }
}

impl AppToken {
    /// Makes `sheet` (built from [`AppToken::vitale_data`]) the app sheet this token vouches
    /// for: mode `app`, no card proof, the token (DER, hex) as its presence, and its rights the
    /// app's, read when the token was made (`issuedAt`).
    pub fn vouch(&self, sheet: &mut crate::fse::CareSheet) -> Result<(), DerError> {
        use crate::fse::{AppPresence, Mode, RightsOrigin, RightsSource};
        let der = self.to_der()?;
        sheet.mode = Mode::App;
        sheet.presence = None;
        sheet.app_presence = Some(AppPresence {
            token: hex::encode(der),
        });
        sheet.rights = Some(RightsOrigin {
            source: RightsSource::App,
            read_at: self.body.issued_at.clone(),
            answer_digest: None,
            fallback: None,
        });
        Ok(())
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url (RFC 4648 §5) without padding.
pub fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Reads base64url without padding; `None` on any other character, a padding, a length that
/// no encoding has, or unused bits not zero (one encoding per byte string).
pub fn from_base64url(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| B64.iter().position(|b| *b == c).map(|p| p as u32);
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = chunk.len() - 1;
        let unused = n & ((1u32 << (24 - 8 * bytes)) - 1);
        if unused != 0 {
            return None;
        }
        out.extend_from_slice(&n.to_be_bytes()[1..=bytes]);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
