//! One card in a reader as the card thread holds it ([`Slot`]): reading it when it comes,
//! its PIN, signatures and proofs of presence, and the APDU trace on its link.

use fse_formats::cards::{self, CardKind, CpsData, Pin, Puk, VitaleData};
use fse_formats::channel::{CardChannel, CardError, ChannelError};
use fse_formats::pki::CertCheck;

use super::CardInfo;

/// A card in a reader, as the card thread knows it.
pub struct Slot {
    /// Reader name.
    pub reader: String,
    /// ATR of the card.
    pub atr: Vec<u8>,
    /// What the card is.
    pub kind: CardKind,
    /// CPS contents, when a CPS.
    pub cps: Option<CpsData>,
    /// Vitale contents, when a Vitale card.
    pub vitale: Option<VitaleData>,
    /// Whether the CPS PIN was verified in this card session.
    pub pin_verified: bool,
    /// The CPS's signing session, while its PIN is verified (`session`).
    pub session: Option<super::session::Session>,
    /// The link broke during an operation: the card left.
    pub removed: bool,
    /// The card could not be read (link error, not a clean answer): worth another try.
    pub unreadable: Option<String>,
    /// What the trust store says of the card's certificate (CPS and Vitale cards).
    pub certificate: Option<CertCheck>,
    /// The link to the card.
    pub channel: Box<dyn CardChannel + Send>,
    /// The Vitale application is selected since this slot's last exchange (see `authenticate`).
    vitale_selected: bool,
}

impl Slot {
    /// Identifies and reads a freshly inserted card.
    pub fn open(reader: String, atr: Vec<u8>, channel: Box<dyn CardChannel + Send>) -> Slot {
        let mut channel: Box<dyn CardChannel + Send> = Box::new(Traced {
            reader: reader.clone(),
            inner: channel,
        });
        let mut slot = Slot {
            reader,
            atr,
            kind: CardKind::Unknown,
            cps: None,
            vitale: None,
            pin_verified: false,
            session: None,
            removed: false,
            unreadable: None,
            certificate: None,
            channel: Box::new(NoCard),
            vitale_selected: false,
        };
        match cards::identify(&mut channel) {
            Ok(CardKind::Cps) => match cards::read_cps(&mut channel) {
                Ok(data) => {
                    slot.kind = CardKind::Cps;
                    slot.cps = Some(data);
                }
                Err(e) => slot.unreadable = Some(format!("CPS unreadable: {e}")),
            },
            Ok(CardKind::Vitale) => match cards::read_vitale(&mut channel) {
                Ok(data) => {
                    slot.kind = CardKind::Vitale;
                    slot.vitale = Some(data);
                }
                Err(e) => slot.unreadable = Some(format!("Vitale card unreadable: {e}")),
            },
            Ok(CardKind::Unknown) => {}
            Err(e) => slot.unreadable = Some(format!("card did not answer SELECT: {e}")),
        }
        slot.channel = channel;
        slot
    }

    fn track<T>(&mut self, r: Result<T, CardError>) -> Result<T, CardError> {
        // Any other exchange may have selected something else on this card.
        self.vitale_selected = false;
        if self.channel.take_reset() {
            // The card was reset mid-session (another application, a re-insertion): its PIN state is gone.
            self.pin_verified = false;
        }
        if let Err(CardError::Channel(ChannelError::CardRemoved)) = &r {
            self.removed = true;
            self.pin_verified = false;
        }
        r
    }

    /// Presents the PIN (once: a wrong PIN is reported, never retried).
    pub fn verify_pin(&mut self, pin: &Pin) -> Result<(), CardError> {
        let r = cards::verify_pin(&mut self.channel, pin);
        let r = self.track(r);
        self.pin_verified = r.is_ok();
        if r.is_ok() {
            // A PIN verified anew opens a new session (`Registry::sessions`).
            self.session = None;
        }
        r
    }

    /// Changes the PIN (the old one is checked by the card; never retried).
    pub fn change_pin(&mut self, old: &Pin, new: &Pin) -> Result<(), CardError> {
        let r = cards::change_pin(&mut self.channel, old, new);
        let r = self.track(r);
        self.pin_verified = r.is_ok();
        r
    }

    /// Unblocks the PIN with the PUK and sets a new one; the new PIN must then be verified.
    pub fn unblock_pin(&mut self, puk: &Puk, new: &Pin) -> Result<(), CardError> {
        let r = cards::unblock_pin(&mut self.channel, puk, new);
        self.pin_verified = false;
        self.track(r)
    }

    /// Has the card forget its verified PIN (a signing session ended): nothing is signed
    /// until the PIN is presented again. A card that refuses is only logged: fsed's own PIN
    /// state, already dropped, keeps it from signing.
    pub fn forget_pin(&mut self) {
        let r = cards::reset_pin_status(&mut self.channel);
        if let Err(e) = self.track(r) {
            tracing::warn!(reader = %self.reader, error = %e, "the card did not reset its PIN status");
        }
    }

    /// PIN tries left, `None` when verified.
    pub fn pin_tries_left(&mut self) -> Result<Option<u8>, CardError> {
        let r = cards::pin_tries_left(&mut self.channel);
        self.track(r)
    }

    /// Has the CPS sign `message`; refused here already when the PIN is not verified.
    pub fn sign(&mut self, message: &[u8]) -> Result<[u8; 64], CardError> {
        if !self.pin_verified {
            return Err(CardError::PinRequired);
        }
        let r = cards::select_aid(&mut self.channel, cards::AID_CPS)
            .and_then(|()| cards::cps_sign(&mut self.channel, message));
        self.track(r)
    }

    /// Has the Vitale card sign a proof-of-presence challenge. After a first success the
    /// Vitale application stays selected until another command goes to this card (or it is
    /// reset), so the next challenges go alone; any failure of that short path falls back
    /// to SELECT + INTERNAL AUTHENTICATE.
    pub fn authenticate(&mut self, challenge: &[u8; 32]) -> Result<[u8; 64], CardError> {
        if self.vitale_selected {
            self.vitale_selected = false;
            match cards::vitale_authenticate_selected(&mut self.channel, challenge) {
                Ok(sig) if !self.channel.take_reset() => {
                    self.vitale_selected = true;
                    return Ok(sig);
                }
                Err(e @ CardError::Channel(ChannelError::CardRemoved)) => {
                    return self.track(Err(e));
                }
                // Refused (selection lost) or answered across a reset: the full exchange.
                _ => {}
            }
        }
        let r = cards::vitale_authenticate(&mut self.channel, challenge);
        let r = self.track(r);
        self.vitale_selected = r.is_ok();
        r
    }

    /// A summary for the API.
    pub fn info(&self) -> CardInfo {
        CardInfo {
            reader: self.reader.clone(),
            atr: hex::encode_upper(&self.atr),
            kind: self.kind,
            serial: self
                .cps
                .as_ref()
                .map(|c| c.holder.serial.clone())
                .or_else(|| self.vitale.as_ref().map(|v| v.serial.clone())),
            pin_verified: self.pin_verified,
            session: None,
            locked_by: None,
            lock_expires_at: None,
            error: self.unreadable.clone(),
            certificate: self.certificate.clone(),
            cps: self.cps.clone(),
            vitale: self.vitale.clone(),
        }
    }
}

/// Why this CPS may not sign anything today, if it may not: a staff card, an expired card, a
/// certificate that is revoked, expired or not trusted.
pub fn refusal_to_sign(
    cps: &CpsData,
    certificate: Option<&CertCheck>,
    today: chrono::NaiveDate,
) -> Option<String> {
    if let Some(why) = certificate.and_then(CertCheck::refusal) {
        return Some(format!("CPS {}: {why}", cps.holder.serial));
    }
    if cps.holder.card_type != cards::CardType::Cps {
        return Some(format!(
            "card {} is a staff card (CPE): it never signs",
            cps.holder.serial
        ));
    }
    match chrono::NaiveDate::parse_from_str(&cps.holder.valid_until, "%Y%m%d") {
        Ok(end) if end >= today => None,
        Ok(_) => Some(format!(
            "CPS {} expired on {}",
            cps.holder.serial, cps.holder.valid_until
        )),
        Err(_) => Some(format!(
            "CPS {}: unreadable validity date",
            cps.holder.serial
        )),
    }
}

/// Why this CPS may not sign a lot today, if it may not: [`refusal_to_sign`]'s reasons (named
/// by the field `cps`), or no situation of the card that may sign lots (field `situation`).
/// The batcher, a lot signed at another fsed and `cards.sign` ask the same.
pub fn refusal_to_sign_lots(
    cps: &CpsData,
    certificate: Option<&CertCheck>,
    today: chrono::NaiveDate,
) -> Option<(String, &'static str)> {
    if let Some(why) = refusal_to_sign(cps, certificate, today) {
        return Some((why, "cps"));
    }
    (!cps.situations.iter().any(|s| s.may_sign_lot)).then(|| {
        (
            "no situation of this CPS may sign lots".to_string(),
            "situation",
        )
    })
}

/// Logs every APDU at debug level: commands with PINs masked, answers as length and status word only.
struct Traced {
    reader: String,
    inner: Box<dyn CardChannel + Send>,
}

impl CardChannel for Traced {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        tracing::debug!(reader = %self.reader, apdu = %fse_formats::apdu::redacted(command), "card <");
        let r = self.inner.transmit(command);
        match &r {
            Ok(resp) => {
                let sw = resp
                    .len()
                    .checked_sub(2)
                    .map(|i| format!("{:02X}{:02X}", resp[i], resp[i + 1]))
                    .unwrap_or_else(|| "-".into());
                tracing::debug!(reader = %self.reader, bytes = resp.len().saturating_sub(2), sw = %sw, "card >");
            }
            Err(e) => tracing::debug!(reader = %self.reader, error = %e, "card link failed"),
        }
        r
    }

    fn take_reset(&mut self) -> bool {
        self.inner.take_reset()
    }
}

struct NoCard;

impl CardChannel for NoCard {
    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        Err(ChannelError::CardRemoved)
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use fse_simulator::card::VirtualCard;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// An in-process card behind a channel that counts the APDUs it carries.
    pub(in crate::cards) struct Counted {
        pub(in crate::cards) card: Arc<Mutex<fse_simulator::card::VirtualVitale>>,
        pub(in crate::cards) apdus: Arc<AtomicUsize>,
    }

    impl CardChannel for Counted {
        fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
            self.apdus.fetch_add(1, Ordering::SeqCst);
            Ok(self.card.lock().unwrap().process(command))
        }
    }

    #[test]
    fn vitale_challenges_after_the_first_skip_the_select_and_recover_a_lost_selection() {
        let card = Arc::new(Mutex::new(fse_simulator::profiles::default_vitale()));
        let apdus = Arc::new(AtomicUsize::new(0));
        let atr = card.lock().unwrap().atr();
        let mut slot = Slot::open(
            "test reader".into(),
            atr,
            Box::new(Counted {
                card: Arc::clone(&card),
                apdus: Arc::clone(&apdus),
            }),
        );
        let key = slot.vitale.as_ref().expect("a Vitale card").public_key;
        let sent = || apdus.load(Ordering::SeqCst);

        let (c1, c2, c3) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let before = sent();
        let s1 = slot.authenticate(&c1).unwrap();
        assert_eq!(sent() - before, 2, "SELECT + INTERNAL AUTHENTICATE");
        let before = sent();
        let s2 = slot.authenticate(&c2).unwrap();
        assert_eq!(sent() - before, 1, "INTERNAL AUTHENTICATE alone");
        assert!(cards::verify_signature(&key, &c1, &s1));
        assert!(cards::verify_signature(&key, &c2, &s2));

        // The card loses its selection behind fsed's back: the short path is refused, the
        // full exchange follows, and the answer is still right.
        card.lock().unwrap().reset();
        let before = sent();
        let s3 = slot.authenticate(&c3).unwrap();
        assert_eq!(
            sent() - before,
            3,
            "refused, then SELECT + INTERNAL AUTHENTICATE"
        );
        assert!(cards::verify_signature(&key, &c3, &s3));

        // Any other command to the card ends the short path.
        let _ = slot.pin_tries_left();
        let before = sent();
        slot.authenticate(&c1).unwrap();
        assert_eq!(sent() - before, 2);
    }
}
