//! `fse-sim app`: the Vitale app (ApCV) on the patient's phone. It holds one beneficiary's
//! identity and rights (from a Vitale profile) and an Ed25519 key certified by the test PKI's
//! Vitale-app CA ([`pki`]); given fsed's challenge (`presence.challenge`) and the
//! practitioner's national id, it makes a short-lived presence token
//! ([`fse_formats::app::AppToken`]), prints its text form on stdout, shows it as a QR code
//! on stderr (Unicode half blocks) and writes it as a PNG ([`qr`]).
//!
//! Knobs for tests: `--expired` (a token whose lifetime ended a minute ago), `--issued-at`
//! (a fixed time of issue), `--sign-with-unknown-ca` (a certificate from a CA no trust store
//! holds).

pub mod pki;
pub mod qr;

use std::path::PathBuf;

use fse_formats::app::{format_time, AppToken, AppTokenBody};
use fse_formats::cards::Beneficiary;

use crate::pki::TestPki;
use crate::profile_keys::{app_key, app_serial};
use crate::profiles::{Profile, DEFAULT_VITALE};

/// Lifetime of a token unless `--lifetime-secs` says otherwise: 2 minutes.
pub const DEFAULT_LIFETIME_SECS: i64 = 120;

/// `fse-sim app` options.
#[derive(Debug, Clone, clap::Args)]
pub struct AppArgs {
    /// Vitale profile (built-in name or TOML file) the app's beneficiary comes from.
    #[arg(long, default_value = DEFAULT_VITALE)]
    pub profile: String,
    /// Beneficiary of that card (0 = the assuré).
    #[arg(long, default_value_t = 0)]
    pub beneficiary: usize,
    /// fsed's challenge (`presence.challenge`), 32 hex digits.
    #[arg(long)]
    pub challenge: String,
    /// National id of the practitioner the token is shown to.
    #[arg(long)]
    pub practitioner: String,
    /// How long the token lives, seconds.
    #[arg(long, default_value_t = DEFAULT_LIFETIME_SECS)]
    pub lifetime_secs: i64,
    /// Write the QR code as a PNG to this file.
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Test knob: a token whose lifetime ended a minute ago.
    #[arg(long)]
    pub expired: bool,
    /// Test knob: the time of issue `YYYYMMDDHHMMSSZ` (default: now).
    #[arg(long)]
    pub issued_at: Option<String>,
    /// Test knob: the app's certificate comes from a CA nobody trusts.
    #[arg(long)]
    pub sign_with_unknown_ca: bool,
}

/// Why `fse-sim app` could not make a token.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A parameter that cannot be used, named.
    #[error("{field}: {reason}")]
    Param {
        /// The option.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The profile, the PKI or an encoding failed.
    #[error("{0}")]
    Other(String),
    /// Writing the PNG failed.
    #[error("{path}: {reason}")]
    Write {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
}

fn param(field: &'static str, reason: impl Into<String>) -> AppError {
    AppError::Param {
        field,
        reason: reason.into(),
    }
}

/// A Vitale app: its serial, its beneficiary, its key and certificate.
pub struct App {
    /// The app serial (its certificate's subject serialNumber).
    pub serial: String,
    /// AMO organism code, 9 digits.
    pub organism: String,
    /// The beneficiary it holds.
    pub beneficiary: Beneficiary,
    key: ed25519_dalek::SigningKey,
    /// Its certificate, DER.
    pub certificate: Vec<u8>,
}

impl App {
    /// The app of beneficiary `index` of the Vitale profile `profile`, certified by the test
    /// PKI's Vitale-app CA (or, `unknown_ca`, by a CA nobody trusts).
    pub fn from_profile(profile: &str, index: usize, unknown_ca: bool) -> Result<App, AppError> {
        let v = match Profile::load(profile).map_err(|e| AppError::Other(e.to_string()))? {
            Profile::Vitale(v) => v,
            _ => {
                return Err(param(
                    "profile",
                    format!("{profile} is not a Vitale profile"),
                ))
            }
        };
        let data = v.data();
        let beneficiary = data.beneficiaries.get(index).cloned().ok_or_else(|| {
            param(
                "beneficiary",
                format!("the card has {} beneficiaries", data.beneficiaries.len()),
            )
        })?;
        let serial = app_serial(&v.serial, index);
        let key = app_key(&serial);
        let public = key.verifying_key().to_bytes();
        let certificate = if unknown_ca {
            pki::unknown_ca_app_certificate(&serial, &public)
        } else {
            TestPki::shared()
                .map_err(AppError::Other)?
                .app_certificate(&serial, &public)
        }
        .map_err(|e| AppError::Other(e.to_string()))?;
        Ok(App {
            serial,
            organism: data.organism.code(),
            beneficiary,
            key,
            certificate,
        })
    }

    /// A token bound to `challenge` and `practitioner_id`, issued at `issued_at` (Unix
    /// seconds) and living `lifetime_secs`.
    pub fn token(
        &self,
        challenge: [u8; 16],
        practitioner_id: &str,
        issued_at: i64,
        lifetime_secs: i64,
    ) -> Result<AppToken, AppError> {
        let b = &self.beneficiary;
        let body = AppTokenBody {
            app_serial: self.serial.clone(),
            nir: b.nir.clone(),
            surname: b.surname.clone(),
            given_name: b.given_name.clone(),
            birth_date: b.birth_date.clone(),
            rank: b.rank,
            organism: self.organism.clone(),
            rights_from: b.rights_from.clone(),
            rights_until: b.rights_until.clone(),
            challenge,
            practitioner_id: practitioner_id.to_string(),
            issued_at: format_time(issued_at),
            expires_at: format_time(issued_at.saturating_add(lifetime_secs)),
        };
        AppToken::sign(body, &self.key, self.certificate.clone())
            .map_err(|e| AppError::Other(e.to_string()))
    }
}

/// Makes the token `args` ask for at `now` (Unix seconds).
pub fn make_token(args: &AppArgs, now: i64) -> Result<AppToken, AppError> {
    let challenge: [u8; 16] = hex::decode(args.challenge.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| param("challenge", "not 32 hex digits (16 bytes)"))?;
    if args.lifetime_secs <= 0 {
        return Err(param("lifetime-secs", "must be positive"));
    }
    let issued_at = match &args.issued_at {
        Some(t) => fse_formats::app::parse_time(t)
            .ok_or_else(|| param("issued-at", "not YYYYMMDDHHMMSSZ"))?,
        None if args.expired => now - args.lifetime_secs - 60,
        None => now,
    };
    let app = App::from_profile(&args.profile, args.beneficiary, args.sign_with_unknown_ca)?;
    app.token(challenge, &args.practitioner, issued_at, args.lifetime_secs)
}

/// Runs `fse-sim app`: the token's text on stdout (one line), its QR code on stderr, and the
/// PNG when asked. Returns the text.
pub fn run(args: &AppArgs) -> Result<String, AppError> {
    let token = make_token(args, chrono::Utc::now().timestamp())?;
    let text = token
        .to_text()
        .map_err(|e| AppError::Other(e.to_string()))?;
    let code = qr::code(&text)?;
    if let Some(path) = &args.png {
        qr::write_png(&code, path)?;
    }
    eprintln!("{}", qr::terminal(&code));
    Ok(text)
}

#[cfg(test)]
mod tests;
