//! The insurer of a scenario the runner starts: the simulator's judge in a thread on fsed's
//! spool, its returns written to a staging folder and delivered into fsed's inbox as the
//! scenario says (held, lost, duplicated, signed with a rotated or an unknown key).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fse_formats::ack::SignedReturn;

use super::model::{InsurerKey, InsurerSpec};
use crate::insurer::{load_trust, spool_pass, Insurer, Knobs};

/// A running insurer loop.
pub struct InsurerLoop {
    stop: Arc<AtomicBool>,
    held: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl InsurerLoop {
    /// Starts it on `spool` (`outbox`, `inbox`), with the trust directory `trust`.
    pub fn start(spec: &InsurerSpec, spool: &Path, trust: &Path) -> Result<InsurerLoop, String> {
        let mut judge = Insurer::new(crate::insurer::DEFAULT_INSURER)
            .answering_as_each_destination()
            .with_knobs(Knobs {
                reject_first_lots: spec.reject_lots,
                reject_percent: 0,
                payments: spec.payments,
                refuse_payments_percent: spec.refuse_payments_percent,
                malformed_percent: 0,
                reply_delay: Duration::ZERO,
                slow_consumer: Duration::ZERO,
                seed: 1,
                ..Knobs::default()
            });
        judge = judge.with_trust(load_trust(trust).map_err(|e| e.to_string())?);
        let (outbox, inbox, staging) = (
            spool.join("outbox"),
            spool.join("inbox"),
            spool.join("insurer-staging"),
        );
        for d in [&outbox, &inbox, &staging] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicBool::new(spec.hold));
        let mut delivery = Delivery {
            spec: spec.clone(),
            lost: 0,
            inbox,
            staging: staging.clone(),
        };
        let (s, h) = (Arc::clone(&stop), Arc::clone(&held));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                // An outbox that is not a folder (a transport outage) is retried next turn.
                let _ = spool_pass(&mut judge, &outbox, &staging);
                if !h.load(Ordering::SeqCst) {
                    delivery.deliver();
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        Ok(InsurerLoop {
            stop,
            held,
            handle: Some(handle),
        })
    }

    /// Delivers the held returns from now on.
    pub fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
    }
}

impl Drop for InsurerLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Delivery {
    spec: InsurerSpec,
    lost: u32,
    inbox: PathBuf,
    staging: PathBuf,
}

impl Delivery {
    /// Moves the staged returns into fsed's inbox: each ARL before its lot's payment return.
    fn deliver(&mut self) {
        let Ok(dir) = std::fs::read_dir(&self.staging) else {
            return;
        };
        let mut files: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort_by_key(|p| (p.file_stem().map(ToOwned::to_owned), !is_arl(p)));
        let mut lost_stems = Vec::new();
        for path in files {
            let stem = path.file_stem().map(ToOwned::to_owned);
            if is_arl(&path) && self.lost < self.spec.lose_arls {
                self.lost += 1;
                lost_stems.push(stem);
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if lost_stems.contains(&stem) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if !self.due(&path) {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let bytes = resign(&bytes, self.spec.key).unwrap_or(bytes);
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if self.spec.malformed_replies {
                // Half the return, under a name read before the whole one.
                let _ = put(
                    &self.inbox,
                    &format!("0-malformed-{name}"),
                    &bytes[..bytes.len() / 2],
                );
            }
            if put(&self.inbox, &name, &bytes).is_err() {
                continue;
            }
            if self.spec.duplicate_replies {
                let _ = put(&self.inbox, &format!("dup-{name}"), &bytes);
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

impl Delivery {
    /// Whether a staged return has waited its `reply_delay_ms`.
    fn due(&self, path: &Path) -> bool {
        if self.spec.reply_delay_ms == 0 {
            return true;
        }
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= Duration::from_millis(self.spec.reply_delay_ms))
    }
}

fn is_arl(p: &Path) -> bool {
    p.extension()
        .is_some_and(|x| x == fse_formats::wire::SPOOL_ARL_SUFFIX)
}

/// Writes `name` into `dir` atomically (a hidden temporary name, then a rename).
fn put(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// A return signed again with another key than the insurer's usual one: a rotated key the
/// insurer CA certified, or a key under a self-signed certificate nobody trusts.
fn resign(bytes: &[u8], key: InsurerKey) -> Option<Vec<u8>> {
    if key == InsurerKey::Current {
        return None;
    }
    let signed = SignedReturn::from_der(bytes).ok()?;
    let code = signed.content.insurer().to_string();
    let new_key = crate::pki::insurer_key(&format!("{code}:rotated"));
    let cert = match key {
        InsurerKey::Rotated => crate::pki::TestPki::shared()
            .ok()?
            .insurer_certificate_for_key(&code, &new_key.verifying_key())
            .ok()?,
        _ => crate::pki::self_signed_insurer_certificate(&code, new_key.clone()).ok()?,
    };
    SignedReturn::sign(signed.content, &new_key, cert)
        .and_then(|s| s.to_der())
        .ok()
}
