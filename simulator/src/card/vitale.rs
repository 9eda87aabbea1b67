//! The simulated carte Vitale: its files and its proof of presence (INTERNAL AUTHENTICATE).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use fse_formats::apdu::{self, Response};
use fse_formats::cards::{self, VitaleData};

use super::common::{wrong_le_for_signature, CardKey, FileSystem};
use super::{CardStats, VirtualCard, ATR_VITALE};

/// A simulated carte Vitale.
pub struct VirtualVitale {
    fs: FileSystem,
    key: CardKey,
    stats: Arc<CardStats>,
}

impl VirtualVitale {
    /// A Vitale card holding `data` (its `public_key` is replaced by `key`'s).
    pub fn new(data: &VitaleData, key: SigningKey) -> VirtualVitale {
        let mut fs = FileSystem::new(cards::AID_VITALE);
        fs.files
            .insert(cards::EF_VITALE_ID, cards::encode_vitale_id(data));
        fs.files.insert(
            cards::EF_VITALE_BENEFICIARIES,
            cards::encode_beneficiaries(&data.beneficiaries),
        );
        fs.files.insert(
            cards::EF_VITALE_KEY,
            cards::encode_key(&key.verifying_key().to_bytes()),
        );
        if let Some(amc) = &data.amc {
            fs.files
                .insert(cards::EF_VITALE_AMC, cards::encode_amc(amc));
        }
        if let Some(cert) = &data.certificate {
            fs.files.insert(cards::EF_VITALE_CERT, cert.clone());
        }
        VirtualVitale {
            fs,
            key: CardKey::new(key),
            stats: Arc::default(),
        }
    }

    /// The card's counters.
    pub fn stats(&self) -> Arc<CardStats> {
        Arc::clone(&self.stats)
    }
}

impl VirtualCard for VirtualVitale {
    fn received(&mut self) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
    }

    fn atr(&self) -> Vec<u8> {
        ATR_VITALE.to_vec()
    }

    fn process(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.stats.apdus.fetch_add(1, Ordering::Relaxed);
        let resp = match self.fs.common(bytes) {
            Err(done) => done,
            Ok(cmd) if cmd.ins == apdu::INS_INTERNAL_AUTHENTICATE => {
                if (cmd.p1, cmd.p2) != (0, 0) {
                    Response::status(apdu::SW_WRONG_P1P2)
                } else if !self.fs.app_selected {
                    Response::status(apdu::SW_CONDITIONS_NOT_SATISFIED)
                } else if cmd.data.len() != 32 {
                    Response::status(apdu::SW_WRONG_LENGTH)
                } else if let Some(wrong_le) = wrong_le_for_signature(&cmd) {
                    wrong_le
                } else {
                    self.stats.authentications.fetch_add(1, Ordering::Relaxed);
                    Response::ok(self.key.sign(&cmd.data))
                }
            }
            Ok(_) => Response::status(apdu::SW_INS_NOT_SUPPORTED),
        };
        resp.to_bytes()
    }

    fn reset(&mut self) {
        self.fs.app_selected = false;
        self.fs.current = None;
    }
}
