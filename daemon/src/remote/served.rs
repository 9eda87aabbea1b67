//! The serving side's memory of `cards.sign` answers ([`SignCache`]): a repeat of a request
//! (the same `request_id`, card and message) is answered the kept signature without a second
//! card operation, so that a link cut after the card signed and before the answer arrived never
//! has the card sign twice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// How many answers are kept at most.
pub const CAPACITY: usize = 1024;
/// How long an answer is kept.
pub const KEPT_FOR: Duration = Duration::from_secs(15 * 60);

/// What a request asks: its card and the SHA-256 of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Asked {
    card: [u8; 32],
    message: [u8; 32],
}

impl Asked {
    fn new(cps_serial: &str, message: &[u8]) -> Asked {
        Asked {
            card: Sha256::digest(cps_serial.as_bytes()).into(),
            message: Sha256::digest(message).into(),
        }
    }
}

/// One kept answer.
struct Kept {
    asked: Asked,
    signature: [u8; 64],
    at: Instant,
}

/// What the cache says of a request before the card is asked.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Never answered (or forgotten): ask the card.
    New,
    /// Answered already: this signature, without asking the card again.
    Answered([u8; 64]),
    /// The same `request_id` was used for another card or message: refused.
    Reused,
}

/// The kept answers of `cards.sign`, by `request_id` (at most [`CAPACITY`], each for
/// [`KEPT_FOR`]). Callers hold it locked across the card operation, so that two copies of one
/// request arriving together make one signature.
#[derive(Default)]
pub struct SignCache {
    kept: HashMap<String, Kept>,
}

impl SignCache {
    /// What is known of `request_id` asking `cps_serial` to sign `message` at `now`.
    pub fn lookup(
        &self,
        request_id: &str,
        cps_serial: &str,
        message: &[u8],
        now: Instant,
    ) -> Lookup {
        match self.kept.get(request_id) {
            Some(k) if now.saturating_duration_since(k.at) < KEPT_FOR => {
                if k.asked == Asked::new(cps_serial, message) {
                    Lookup::Answered(k.signature)
                } else {
                    Lookup::Reused
                }
            }
            _ => Lookup::New,
        }
    }

    /// Keeps the card's answer to `request_id` (the expired first, then the oldest, make room).
    pub fn keep(
        &mut self,
        request_id: &str,
        cps_serial: &str,
        message: &[u8],
        signature: [u8; 64],
        now: Instant,
    ) {
        self.kept
            .retain(|_, k| now.saturating_duration_since(k.at) < KEPT_FOR);
        if self.kept.len() >= CAPACITY && !self.kept.contains_key(request_id) {
            let oldest = self
                .kept
                .iter()
                .min_by_key(|(_, k)| k.at)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                self.kept.remove(&id);
            }
        }
        self.kept.insert(
            request_id.to_owned(),
            Kept {
                asked: Asked::new(cps_serial, message),
                signature,
                at: now,
            },
        );
    }

    /// How many answers are kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_answered_from_memory_and_a_reuse_is_refused() {
        let mut c = SignCache::default();
        let t0 = Instant::now();
        assert_eq!(c.lookup("lot-1:ab", "CPS-1", b"header", t0), Lookup::New);
        c.keep("lot-1:ab", "CPS-1", b"header", [7; 64], t0);
        assert_eq!(
            c.lookup("lot-1:ab", "CPS-1", b"header", t0 + Duration::from_secs(60)),
            Lookup::Answered([7; 64])
        );
        assert_eq!(
            c.lookup("lot-1:ab", "CPS-1", b"other header", t0),
            Lookup::Reused
        );
        assert_eq!(c.lookup("lot-1:ab", "CPS-2", b"header", t0), Lookup::Reused);
        // 15 minutes = 900 s: at 899 s it is still kept, at 900 s forgotten.
        assert_eq!(
            c.lookup(
                "lot-1:ab",
                "CPS-1",
                b"header",
                t0 + Duration::from_secs(899)
            ),
            Lookup::Answered([7; 64])
        );
        assert_eq!(
            c.lookup(
                "lot-1:ab",
                "CPS-1",
                b"header",
                t0 + Duration::from_secs(900)
            ),
            Lookup::New
        );
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_oldest_first() {
        let mut c = SignCache::default();
        let t0 = Instant::now();
        for i in 0..CAPACITY {
            c.keep(
                &format!("r{i}"),
                "CPS-1",
                b"m",
                [1; 64],
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(c.len(), CAPACITY);
        let later = t0 + Duration::from_secs(1);
        c.keep("one more", "CPS-1", b"m", [2; 64], later);
        // 1024 kept, one more in: the oldest (r0) leaves, r1 stays.
        assert_eq!(c.len(), CAPACITY);
        assert_eq!(c.lookup("r0", "CPS-1", b"m", later), Lookup::New);
        assert_eq!(
            c.lookup("r1", "CPS-1", b"m", later),
            Lookup::Answered([1; 64])
        );
        assert_eq!(
            c.lookup("one more", "CPS-1", b"m", later),
            Lookup::Answered([2; 64])
        );
    }
}
