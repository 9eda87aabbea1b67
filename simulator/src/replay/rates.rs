//! The raw Ed25519 rates of this machine, measured in the same run as the replay and on as
//! many threads as it has workers: single verification (`verify_strict`, what the insurer's
//! single checks use), batch verification ([`super::batch`], batches of [`BATCH`]) and signing.

use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};

use super::batch::{self, Item};

/// Signatures per batch in the batch rate (about a lot's worth and a few more).
pub const BATCH: usize = 64;

/// Signatures per second, all threads together.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rates {
    /// Threads measuring at once.
    pub threads: usize,
    /// Seconds each rate was measured.
    pub secs: f64,
    /// Single verifications per second.
    pub single_verify_per_sec: f64,
    /// Signatures verified per second in batches of [`BATCH`].
    pub batch_verify_per_sec: f64,
    /// Signatures made per second.
    pub sign_per_sec: f64,
}

/// Runs `op` on `threads` threads for `secs` seconds each; operations per second in all.
fn on_threads(threads: usize, secs: f64, op: &(dyn Fn() -> u64 + Sync)) -> f64 {
    let span = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let done: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let t0 = Instant::now();
                    let mut n = 0;
                    while t0.elapsed() < span {
                        n += op();
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    done as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

/// Measures the three rates, `secs` seconds each, on `threads` threads.
pub fn measure(threads: usize, secs: f64) -> Rates {
    let signed: Vec<([u8; 32], [u8; 32], [u8; 64])> = (0..BATCH)
        .map(|i| {
            let key = SigningKey::from_bytes(&[i as u8 ^ 0x5A; 32]);
            // A sheet's challenge is a 32-byte digest.
            let message = [i as u8; 32];
            (
                key.verifying_key().to_bytes(),
                message,
                key.sign(&message).to_bytes(),
            )
        })
        .collect();
    let items: Vec<Item<'_>> = signed
        .iter()
        .map(|(key, message, signature)| Item {
            key,
            message,
            signature,
        })
        .collect();
    let single = on_threads(threads, secs, &|| {
        let ok = items.iter().filter(|i| batch::verify_one(i)).count();
        ok as u64
    });
    let batched = on_threads(threads, secs, &|| {
        if batch::verify_batch(&items) {
            BATCH as u64
        } else {
            0
        }
    });
    let key = SigningKey::from_bytes(&[7; 32]);
    let sign = on_threads(threads, secs, &|| {
        let mut n = 0;
        for (_, message, _) in &signed[..8] {
            std::hint::black_box(key.sign(message));
            n += 1;
        }
        n
    });
    Rates {
        threads,
        secs,
        single_verify_per_sec: single,
        batch_verify_per_sec: batched,
        sign_per_sec: sign,
    }
}
