//! `fse-sim replay generate`: the day's signed lots, as fsed makes them, streamed to a file.
//!
//! Each practitioner's sheets are secured sheets (a `G` consultation, priced as the tariff
//! tables say), each proven by its patient's Vitale key over the sheet's challenge; they are
//! grouped by destination (the patient's organism) into lots, salted, put under a Merkle root
//! and signed once by the practitioner's CPS, which carries its certificate from the test PKI.
//! Practitioners are made in chunks by one thread per core; the file is written in the order
//! chunks finish, so memory holds only the chunks in flight.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc;
use std::time::Instant;

use ed25519_dalek::Signer;
use fse_formats::fse::{CareSheet, Mode, Presence, SheetBeneficiary, SheetPractitioner};
use fse_formats::lot::{leaves, LotEntry, LotHeader, SignedLot};

use super::file::{self, Plan, Summary};
use super::population::{self, mix, Practitioner};

/// Practitioners made by one job.
const CHUNK: u64 = 64;
/// Sheets at most in one lot (a practitioner's day stays far under it).
const MAX_LOT: usize = 200;

/// What a generation took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Generated {
    /// What was written.
    pub summary: Summary,
    /// Wall time, seconds.
    pub secs: f64,
    /// Sheets made per second.
    pub sheets_per_sec: f64,
    /// Bytes written.
    pub bytes: u64,
    /// Threads that made lots.
    pub threads: usize,
}

/// One chunk's frames and counts.
struct Chunk {
    frames: Vec<u8>,
    summary: Summary,
}

/// How a damaged lot is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// A byte of the CPS signature flipped: `LOT_SIGNATURE`.
    Signature,
    /// A byte of the first sheet changed after signing: `LOT_MERKLE_ROOT`.
    SheetAfterSigning,
    /// The first sheet's proof of presence made by another key, then signed: `SHEET_INVALID`.
    Presence,
}

/// The damage done to practitioner `p`'s first lot, if any: `tampered` practitioners spread
/// evenly, the three kinds in turn.
pub fn damage_of(p: u64, plan: &Plan) -> Option<Damage> {
    if plan.tampered == 0 {
        return None;
    }
    let stride = (plan.practitioners / plan.tampered).max(1);
    let k = p / stride;
    (p.is_multiple_of(stride) && k < plan.tampered).then_some(match k % 3 {
        0 => Damage::Signature,
        1 => Damage::SheetAfterSigning,
        _ => Damage::Presence,
    })
}

/// Writes the day of `plan` to `out`, on `threads` threads.
pub fn generate(plan: &Plan, out: &mut impl Write, threads: usize) -> Result<Generated, String> {
    let started = Instant::now();
    let pki = crate::pki::TestPki::shared()?;
    let mut counter = CountingWriter {
        inner: out,
        bytes: 0,
    };
    file::write_head(&mut counter, plan).map_err(|e| e.to_string())?;
    let threads = threads.max(1);
    let chunks = plan.practitioners.div_ceil(CHUNK);
    let next = std::sync::atomic::AtomicU64::new(0);
    let (tx, rx) = mpsc::sync_channel::<Result<Chunk, String>>(2 * threads);
    let mut total = Summary::default();
    std::thread::scope(|scope| -> Result<(), String> {
        for _ in 0..threads {
            let (tx, next) = (tx.clone(), &next);
            scope.spawn(move || loop {
                let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if c >= chunks {
                    break;
                }
                let end = ((c + 1) * CHUNK).min(plan.practitioners);
                if tx.send(make_chunk(plan, pki, c * CHUNK..end)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        for chunk in rx {
            let chunk = chunk?;
            counter
                .write_all(&chunk.frames)
                .map_err(|e| format!("replay file: {e}"))?;
            total.lots += chunk.summary.lots;
            total.sheets += chunk.summary.sheets;
            total.tampered_lots += chunk.summary.tampered_lots;
            total.tampered_sheets += chunk.summary.tampered_sheets;
        }
        Ok(())
    })?;
    file::write_tail(&mut counter, &total).map_err(|e| e.to_string())?;
    counter.flush().map_err(|e| format!("replay file: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    Ok(Generated {
        sheets_per_sec: total.sheets as f64 / secs.max(1e-9),
        summary: total,
        secs,
        bytes: counter.bytes,
        threads,
    })
}

struct CountingWriter<'a, W> {
    inner: &'a mut W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn make_chunk(
    plan: &Plan,
    pki: &crate::pki::TestPki,
    range: std::ops::Range<u64>,
) -> Result<Chunk, String> {
    let template = CareSheet::sample(0);
    let mut chunk = Chunk {
        frames: Vec::new(),
        summary: Summary::default(),
    };
    for p in range {
        let pr = population::practitioner(plan.seed, p);
        let certificate = pki
            .cps_certificate(&pr.holder, &pr.key.verifying_key().to_bytes())
            .map_err(|e| format!("certificate of practitioner {p}: {e}"))?;
        let damage = damage_of(p, plan);
        let mut by_destination: BTreeMap<String, Vec<LotEntry>> = BTreeMap::new();
        let n = population::sheets_of(p, plan.sheets, plan.practitioners);
        for j in 0..n {
            let patient = population::patient_of(plan.seed, &pr, p, j, plan.patients);
            let (destination, entry) = sheet(plan, &template, &pr, p, j, patient)?;
            by_destination.entry(destination).or_default().push(entry);
        }
        let mut number = 0;
        for (destination, entries) in by_destination {
            for part in entries.chunks(MAX_LOT) {
                number += 1;
                let hurt = damage.filter(|_| number == 1);
                let lot = lot(plan, &pr, p, number, &destination, part, &certificate, hurt)?;
                let der = lot.to_der().map_err(|e| format!("lot of {p}: {e}"))?;
                file::write_frame(&mut chunk.frames, &der).map_err(|e| e.to_string())?;
                chunk.summary.lots += 1;
                chunk.summary.sheets += part.len() as u64;
                if hurt.is_some() {
                    chunk.summary.tampered_lots += 1;
                    chunk.summary.tampered_sheets += part.len() as u64;
                }
            }
        }
    }
    Ok(chunk)
}

/// Sheet `j` of practitioner `p` for patient `patient`, proven by the patient's card; its
/// destination and salted entry.
fn sheet(
    plan: &Plan,
    template: &CareSheet,
    pr: &Practitioner,
    p: u64,
    j: u64,
    patient: u64,
) -> Result<(String, LotEntry), String> {
    let pt = population::patient(plan.seed, patient);
    let mut sheet = template.clone();
    sheet.number = j + 1;
    // Consultations from 08:00, one every 40 minutes.
    let minutes = 8 * 60 + 40 * (j % 18);
    sheet.created_at = format!("{}{:02}{:02}00Z", plan.day, minutes / 60, minutes % 60);
    for act in &mut sheet.acts {
        act.date = plan.day.clone();
    }
    sheet.practitioner = SheetPractitioner {
        national_id: pr.holder.national_id.clone(),
        surname: pr.holder.surname.clone(),
        given_name: pr.holder.given_name.clone(),
        profession: pr.holder.profession.clone(),
        specialty: pr.holder.specialty.clone(),
        billing_number: pr.billing_number.clone(),
        sector: 1,
        cps_serial: pr.holder.serial.clone(),
    };
    sheet.beneficiary = SheetBeneficiary {
        nir: pt.nir,
        surname: pt.surname,
        given_name: pt.given_name,
        birth_date: pt.birth_date,
        rank: 1,
        organism: pt.organism.clone(),
    };
    sheet.mode = Mode::Secured;
    sheet.degraded_reason = None;
    let challenge = sheet
        .presence_challenge()
        .map_err(|e| format!("sheet {} of {p}: {e}", j + 1))?;
    sheet.presence = Some(Presence {
        vitale_serial: pt.vitale_serial,
        public_key: hex::encode(pt.key.verifying_key().to_bytes()),
        signature: hex::encode(pt.key.sign(&challenge).to_bytes()),
    });
    let mut salt = [0u8; 16];
    salt[..8].copy_from_slice(&mix(plan.seed ^ p.rotate_left(32) ^ j).to_le_bytes());
    salt[8..].copy_from_slice(&mix(p ^ j.rotate_left(40)).to_le_bytes());
    let der = sheet
        .to_der()
        .map_err(|e| format!("sheet {} of {p}: {e}", j + 1))?;
    Ok((pt.organism, LotEntry { salt, sheet: der }))
}

/// The signed lot `number` of practitioner `p` for `destination`, damaged as asked.
#[allow(clippy::too_many_arguments)]
fn lot(
    plan: &Plan,
    pr: &Practitioner,
    p: u64,
    number: u64,
    destination: &str,
    entries: &[LotEntry],
    certificate: &[u8],
    damage: Option<Damage>,
) -> Result<SignedLot, String> {
    let mut entries = entries.to_vec();
    if let (Some(Damage::Presence), Some(first)) = (damage, entries.first_mut()) {
        forge_presence(first, plan.seed)?;
    }
    let header = LotHeader {
        lot_id: format!("R{p:010}-{number}"),
        number,
        practitioner_id: pr.holder.national_id.clone(),
        destination: destination.to_string(),
        sheet_count: entries.len() as u64,
        merkle_root: fse_formats::merkle::root(&leaves(&entries)),
        closed_at: format!("{}200000Z", plan.day),
        cps_serial: pr.holder.serial.clone(),
        signer_key: pr.key.verifying_key().to_bytes(),
        attachments: Vec::new(),
    };
    let signed = header.to_der().map_err(|e| format!("lot of {p}: {e}"))?;
    let mut lot = SignedLot {
        signature: pr.key.sign(&signed).to_bytes(),
        header,
        entries,
        signer_certificate: Some(certificate.to_vec()),
    };
    match damage {
        Some(Damage::Signature) => lot.signature[10] ^= 0x01,
        Some(Damage::SheetAfterSigning) => {
            if let Some(byte) = lot.entries.first_mut().and_then(|e| e.sheet.last_mut()) {
                *byte ^= 0x01;
            }
        }
        Some(Damage::Presence) | None => {}
    }
    Ok(lot)
}

/// Replaces the entry's proof of presence with one made by a key that is not the card's.
fn forge_presence(entry: &mut LotEntry, seed: u64) -> Result<(), String> {
    let mut sheet = CareSheet::from_der(&entry.sheet).map_err(|e| e.to_string())?;
    let challenge = sheet.presence_challenge().map_err(|e| e.to_string())?;
    let other = population::patient(seed ^ 0xBAD, sheet.number).key;
    if let Some(presence) = sheet.presence.as_mut() {
        presence.signature = hex::encode(other.sign(&challenge).to_bytes());
    }
    entry.sheet = sheet.to_der().map_err(|e| e.to_string())?;
    Ok(())
}
