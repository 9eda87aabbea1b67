//! The day's population, made on demand from a seed and an index (nothing is kept in memory):
//! practitioners (a CPS key and certificate each, a département), patients (a Vitale key, a
//! valid NIR, an organism), and which patient each sheet of a practitioner is for.
//!
//! Shape (domain.md and the insurers' public figures, rounded): every practitioner is a
//! general practitioner billing a `G` consultation; a patient is of the practitioner's
//! département; 88 % of patients are in the régime général (their département's CPAM), 7 % in
//! the MSA, 5 % in another régime — so a practitioner's day makes a lot for the CPAM and,
//! most days, one or two small ones for the others.

use ed25519_dalek::SigningKey;
use fse_formats::cards::{CardType, CpsHolder};
use sha2::{Digest, Sha256};

/// Départements used (métropole, 95 codes without 20).
const DEPARTEMENTS: usize = 95;
const SURNAMES: [&str; 12] = [
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS", "MOREAU",
    "LAURENT", "SIMON", "MICHEL",
];
const GIVEN: [&str; 12] = [
    "Claire", "Jean", "Marie", "Louis", "Camille", "Paul", "Julie", "Hugo", "Emma", "Lucas",
    "Chloe", "Nathan",
];

/// A counter-based mix (SplitMix64's finaliser): the same input gives the same draw.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The département number (1..=95, 20 skipped) of index `i` of [`DEPARTEMENTS`].
fn departement_number(i: usize) -> u32 {
    let d = (i % DEPARTEMENTS) as u32 + 1;
    if d >= 20 {
        d + 1
    } else {
        d
    }
}

/// A key derived from the seed, a role and an index.
fn key(seed: u64, role: &str, index: u64) -> SigningKey {
    let digest = Sha256::new()
        .chain_update(b"fsed replay ")
        .chain_update(role.as_bytes())
        .chain_update(seed.to_be_bytes())
        .chain_update(index.to_be_bytes())
        .finalize();
    SigningKey::from_bytes(&digest.into())
}

/// `digits` followed by its Luhn key.
fn with_luhn(digits: &str) -> String {
    let key = fse_formats::ids::luhn_key(digits).unwrap_or(0);
    format!("{digits}{key}")
}

/// One practitioner of the day.
pub struct Practitioner {
    /// The card's holder.
    pub holder: CpsHolder,
    /// The billing number of the practitioner's situation.
    pub billing_number: String,
    /// The CPS's signing key.
    pub key: SigningKey,
    /// Index into the départements.
    pub departement: usize,
}

/// Practitioner `p` of the population of `seed`.
pub fn practitioner(seed: u64, p: u64) -> Practitioner {
    let rpps = with_luhn(&format!("1{:09}", p % 1_000_000_000));
    let departement = (mix(seed ^ p) % DEPARTEMENTS as u64) as usize;
    let r = mix(p.wrapping_add(seed));
    Practitioner {
        holder: CpsHolder {
            card_type: CardType::Cps,
            serial: format!("RPL{p:010}"),
            national_id: format!("8{rpps}"),
            surname: SURNAMES[(r % 12) as usize].into(),
            given_name: GIVEN[((r >> 8) % 12) as usize].into(),
            profession: "10".into(),
            specialty: "01".into(),
            valid_until: "20291231".into(),
        },
        billing_number: with_luhn(&format!(
            "{:02}1{:04}",
            departement_number(departement) % 100,
            p % 10_000
        )),
        key: key(seed, "cps", p),
        departement,
    }
}

/// One patient: the beneficiary fields a sheet carries and the Vitale card's key.
pub struct Patient {
    /// NIR, 15 characters with its key.
    pub nir: String,
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// `YYYYMMDD`.
    pub birth_date: String,
    /// The organism code, 9 digits: the lot's destination.
    pub organism: String,
    /// The Vitale card's serial.
    pub vitale_serial: String,
    /// The Vitale card's proof-of-presence key.
    pub key: SigningKey,
}

/// Patient `i` of the population of `seed`.
pub fn patient(seed: u64, i: u64) -> Patient {
    let dep = departement_number(i as usize % DEPARTEMENTS);
    let r = mix(seed ^ i.rotate_left(17));
    let (sex, year, month) = (1 + i % 2, 40 + (r % 60), 1 + (r >> 8) % 12);
    let (commune, order) = (1 + (r >> 16) % 900, 1 + (i / DEPARTEMENTS as u64) % 999);
    let nir13 = format!("{sex}{year:02}{month:02}{dep:02}{commune:03}{order:03}");
    let nir_key = fse_formats::ids::nir_key(&nir13).unwrap_or(0);
    let organism = match (r >> 32) % 100 {
        0..=87 => format!("01{dep:02}10000"),
        88..=94 => format!("02{dep:02}10000"),
        _ => format!("10{dep:02}10000"),
    };
    Patient {
        nir: format!("{nir13}{nir_key:02}"),
        surname: SURNAMES[((r >> 40) % 12) as usize].into(),
        given_name: GIVEN[((r >> 48) % 12) as usize].into(),
        birth_date: format!("19{year:02}{month:02}15"),
        organism,
        vitale_serial: format!("VIT{i:012}"),
        key: key(seed, "vitale", i),
    }
}

/// The patient of practitioner `p`'s sheet `j` among `patients`: one of the practitioner's
/// département when there are enough patients for every département, else any.
pub fn patient_of(seed: u64, p: &Practitioner, p_index: u64, j: u64, patients: u64) -> u64 {
    let draw = mix(seed ^ mix(p_index) ^ j.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let per_dep = patients / DEPARTEMENTS as u64;
    if per_dep == 0 {
        return draw % patients.max(1);
    }
    p.departement as u64 + DEPARTEMENTS as u64 * (draw % per_dep)
}

/// How many sheets practitioner `p` makes when `sheets` are shared by `practitioners`: the
/// quotient, one more for the first `sheets mod practitioners`.
pub fn sheets_of(p: u64, sheets: u64, practitioners: u64) -> u64 {
    let practitioners = practitioners.max(1);
    sheets / practitioners + u64::from(p < sheets % practitioners)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_carry_valid_keys_and_patients_stay_in_their_departement() {
        for i in [0u64, 1, 94, 95, 123_456, 8_499_999] {
            let pt = patient(7, i);
            assert!(fse_formats::ids::nir_is_valid(&pt.nir), "{}", pt.nir);
            // NIR positions 6-7 are the département of birth, the organism's 3-4 the
            // département of residence: the same here, by construction.
            assert_eq!(&pt.nir[5..7], &pt.organism[2..4]);
            let pr = practitioner(7, i);
            assert!(fse_formats::ids::rpps_is_valid(&pr.holder.national_id[1..]));
            assert!(fse_formats::ids::billing_number_is_valid(
                &pr.billing_number
            ));
            let j = patient_of(7, &pr, i, 3, 9_500);
            // 9,500 patients = 100 per département; patient j ≡ the practitioner's département.
            assert_eq!(j % 95, pr.departement as u64);
            assert!(j < 9_500);
        }
    }

    #[test]
    fn sheets_are_shared_out_exactly() {
        // 20,000 sheets over 1,429 practitioners: 13 each (18,577), and the first
        // 20,000 − 18,577 = 1,423 make one more.
        let total: u64 = (0..1_429).map(|p| sheets_of(p, 20_000, 1_429)).sum();
        assert_eq!(total, 20_000);
        assert_eq!(sheets_of(0, 20_000, 1_429), 14);
        assert_eq!(sheets_of(1_428, 20_000, 1_429), 13);
    }
}
