//! Card profiles: the simulated cards as TOML data files under
//! `simulator/profiles/` (built into `fse-sim`, or read from any path), so a
//! vendor's or an insurer's test team can script any card situation.
//! Keys are test keys derived from the card serial (reproducible across
//! runs); they never leave the simulator.

use fse_formats::cards::{
    Amc, Beneficiary, CardType, Coverage, CpsHolder, Organism, Pin, Puk, Situation, VitaleData,
};
use fse_formats::ids;
use serde::Deserialize;

use crate::card::{VirtualCard, VirtualCps, VirtualVitale};
pub use crate::profile_keys::{test_key, ProfileError};

/// PIN of the default CPS.
pub const DEFAULT_PIN: &str = "1234";
/// Unblocking code (PUK) of the default CPS, as on its PIN letter.
pub const DEFAULT_PUK: &str = "12345678";
/// Name of the default CPS profile.
pub const DEFAULT_CPS: &str = "cps-medecin-generaliste";
/// Name of the default Vitale profile.
pub const DEFAULT_VITALE: &str = "vitale-famille";

/// The profiles built into the simulator, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "cps-medecin-generaliste",
        include_str!("../profiles/cps-medecin-generaliste.toml"),
    ),
    (
        "cps-masseur-kinesitherapeute",
        include_str!("../profiles/cps-masseur-kinesitherapeute.toml"),
    ),
    (
        "cps-psychologue",
        include_str!("../profiles/cps-psychologue.toml"),
    ),
    (
        "cps-dieteticien",
        include_str!("../profiles/cps-dieteticien.toml"),
    ),
    (
        "cps-infirmier",
        include_str!("../profiles/cps-infirmier.toml"),
    ),
    (
        "cps-medecin-specialiste",
        include_str!("../profiles/cps-medecin-specialiste.toml"),
    ),
    (
        "cps-remplacant",
        include_str!("../profiles/cps-remplacant.toml"),
    ),
    (
        "cpe-secretaire",
        include_str!("../profiles/cpe-secretaire.toml"),
    ),
    ("cps-expired", include_str!("../profiles/cps-expired.toml")),
    (
        "cps-pin-blocked",
        include_str!("../profiles/cps-pin-blocked.toml"),
    ),
    (
        "cps-medecin-generaliste-renouvelee",
        include_str!("../profiles/cps-medecin-generaliste-renouvelee.toml"),
    ),
    (
        "cps-medecin-associe",
        include_str!("../profiles/cps-medecin-associe.toml"),
    ),
    ("cps-revoked", include_str!("../profiles/cps-revoked.toml")),
    (
        "cps-huit-situations",
        include_str!("../profiles/cps-huit-situations.toml"),
    ),
    (
        "vitale-famille",
        include_str!("../profiles/vitale-famille.toml"),
    ),
    (
        "vitale-adulte",
        include_str!("../profiles/vitale-adulte.toml"),
    ),
    (
        "vitale-famille-quatre",
        include_str!("../profiles/vitale-famille-quatre.toml"),
    ),
    (
        "vitale-droits-expires",
        include_str!("../profiles/vitale-droits-expires.toml"),
    ),
    ("vitale-ald", include_str!("../profiles/vitale-ald.toml")),
    (
        "vitale-maternite",
        include_str!("../profiles/vitale-maternite.toml"),
    ),
    ("vitale-css", include_str!("../profiles/vitale-css.toml")),
    (
        "vitale-amc-tiers-payant",
        include_str!("../profiles/vitale-amc-tiers-payant.toml"),
    ),
    (
        "vitale-opposition",
        include_str!("../profiles/vitale-opposition.toml"),
    ),
    (
        "unknown-card",
        include_str!("../profiles/unknown-card.toml"),
    ),
];

fn yes() -> bool {
    true
}

fn one() -> u8 {
    1
}

/// One situation d'exercice in a profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SituationProfile {
    /// Billing number.
    pub billing_number: String,
    /// Place of practice.
    pub place: String,
    /// Convention sector (default 1).
    #[serde(default = "one")]
    pub sector: u8,
    /// May sign invoices (default true).
    #[serde(default = "yes")]
    pub may_sign_invoice: bool,
    /// May sign lots (default true).
    #[serde(default = "yes")]
    pub may_sign_lot: bool,
    /// Mode d'exercice: `liberal` (default), `salarie` or `remplacant`.
    #[serde(default)]
    pub mode: fse_formats::cards::ExerciseMode,
}

/// A CPS (or CPE) profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpsProfile {
    /// `CPS` or `CPE`.
    pub card_type: CardType,
    /// Serial.
    pub serial: String,
    /// RPPS stem (10 digits; the Luhn key is appended).
    pub rpps: String,
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// Profession code.
    pub profession: String,
    /// Specialty code.
    pub specialty: String,
    /// Last day of validity `YYYYMMDD`.
    pub valid_until: String,
    /// PIN (4 digits).
    pub pin: String,
    /// PUK (8 digits).
    pub puk: String,
    /// PIN tries left at insertion (3 by default; 0 = blocked).
    #[serde(default = "three")]
    pub pin_tries_left: u8,
    /// Declared lost or stolen: its certificate is on the test CA's revocation list.
    #[serde(default)]
    pub revoked: bool,
    /// Situations d'exercice (1 to 8).
    pub situations: Vec<SituationProfile>,
}

fn three() -> u8 {
    3
}

/// One beneficiary in a Vitale profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeneficiaryProfile {
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// Birth date `YYYYMMDD`.
    pub birth_date: String,
    /// NIR: 13 characters (key appended) or 15 with a key that must be right.
    pub nir: String,
    /// Birth rank (default 1).
    #[serde(default = "one")]
    pub rank: u8,
    /// Rights open from `YYYYMMDD`.
    pub rights_from: String,
    /// Rights open until `YYYYMMDD`.
    pub rights_until: String,
    /// Coverage periods: ALD, maternity, AT/MP, CSS.
    #[serde(default)]
    pub coverages: Vec<Coverage>,
    /// The rights the insurer's online service answers when they differ from the card's
    /// (renewed since the card was last updated); absent: the same as the card's.
    #[serde(default)]
    pub online: Option<OnlineRightsProfile>,
}

/// The rights of the day the insurer holds for one beneficiary (`[beneficiaries.online]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineRightsProfile {
    /// Rights open from `YYYYMMDD`.
    pub rights_from: String,
    /// Rights open until `YYYYMMDD`.
    pub rights_until: String,
    /// Coverage periods of the day (absent: the card's).
    #[serde(default)]
    pub coverages: Option<Vec<Coverage>>,
}

/// A Vitale profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitaleProfile {
    /// Serial.
    pub serial: String,
    /// Régime, 2 digits.
    pub regime: String,
    /// Caisse, 3 digits.
    pub caisse: String,
    /// Centre, 4 digits.
    pub centre: String,
    /// Beneficiaries (1 to 6), the assuré first.
    pub beneficiaries: Vec<BeneficiaryProfile>,
    /// The supplementary insurer, when the patient has one.
    #[serde(default)]
    pub amc: Option<Amc>,
    /// Declared lost or stolen: on the opposition list (the Vitale CA's revocation list).
    #[serde(default)]
    pub opposed: bool,
}

/// A card profile of either kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Profile {
    /// A professional card.
    Cps(CpsProfile),
    /// A patient's card.
    Vitale(VitaleProfile),
    /// A card with neither application (a bank card, a loyalty card): fsed must ignore it.
    Unknown(UnknownProfile),
}

/// A foreign card.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownProfile {
    /// Its ATR, hex.
    pub atr: String,
}

/// An RPPS number (11 digits with its Luhn key) from a 10-digit stem.
pub fn rpps(stem10: &str) -> String {
    format!("{stem10}{}", ids::luhn_key(stem10).unwrap_or(0))
}

/// A NIR with its key from 13 characters.
pub fn nir(nir13: &str) -> String {
    format!("{nir13}{:02}", ids::nir_key(nir13).unwrap_or(0))
}

impl Profile {
    /// Parses a profile, checking what the card format cannot hold.
    pub fn parse(name: &str, text: &str) -> Result<Profile, ProfileError> {
        let invalid = |message: String| ProfileError::Invalid {
            name: name.to_string(),
            message,
        };
        let p: Profile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        match &p {
            Profile::Cps(c) => {
                if c.situations.is_empty()
                    || c.situations.len() > fse_formats::cards::MAX_SITUATIONS
                {
                    return Err(invalid("situations: 1 to 8".into()));
                }
                if c.rpps.len() != 10 || !c.rpps.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid("rpps: the 10-digit stem of the RPPS number".into()));
                }
                if Pin::new(&c.pin).is_none() {
                    return Err(invalid("pin: 4 digits".into()));
                }
                if Puk::new(&c.puk).is_none() {
                    return Err(invalid("puk: 8 digits".into()));
                }
            }
            Profile::Vitale(v) => {
                if v.beneficiaries.is_empty() || v.beneficiaries.len() > 6 {
                    return Err(invalid("beneficiaries: 1 to 6".into()));
                }
                for b in &v.beneficiaries {
                    let ok = match b.nir.len() {
                        13 => ids::nir_key(&b.nir).is_some(),
                        15 => ids::nir_is_valid(&b.nir),
                        _ => false,
                    };
                    if !ok {
                        return Err(invalid(format!(
                            "nir {}: 13 characters, or 15 with the right key",
                            b.nir
                        )));
                    }
                }
            }
            Profile::Unknown(u) => {
                let atr = hex::decode(&u.atr).map_err(|_| invalid("atr: hex bytes".into()))?;
                if atr.len() < 2 || atr.len() > 33 {
                    return Err(invalid("atr: 2 to 33 bytes".into()));
                }
            }
        }
        Ok(p)
    }

    /// A built-in profile by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Profile, ProfileError> {
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Profile::parse(name, text);
        }
        match std::fs::read_to_string(name_or_path) {
            Ok(text) => Profile::parse(name_or_path, &text),
            Err(_) => {
                let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
                Err(ProfileError::Unknown(
                    name_or_path.to_string(),
                    names.join(", "),
                ))
            }
        }
    }
}

impl CpsProfile {
    /// The holder and situations as the card holds them.
    pub fn holder(&self) -> (CpsHolder, Vec<Situation>) {
        let holder = CpsHolder {
            card_type: self.card_type,
            serial: self.serial.clone(),
            national_id: format!("8{}", rpps(&self.rpps)),
            surname: self.surname.clone(),
            given_name: self.given_name.clone(),
            profession: self.profession.clone(),
            specialty: self.specialty.clone(),
            valid_until: self.valid_until.clone(),
        };
        let situations = self
            .situations
            .iter()
            .enumerate()
            .map(|(i, s)| Situation {
                index: i as u8,
                billing_number: s.billing_number.clone(),
                place: s.place.clone(),
                sector: s.sector,
                may_sign_invoice: s.may_sign_invoice,
                may_sign_lot: s.may_sign_lot,
                mode: s.mode,
            })
            .collect();
        (holder, situations)
    }

    /// The simulated card, with its certificate from the test PKI.
    pub fn card(&self) -> Result<VirtualCps, ProfileError> {
        let invalid = |message: String| ProfileError::Invalid {
            name: self.serial.clone(),
            message,
        };
        let (holder, situations) = self.holder();
        let key = test_key(&self.serial);
        let certificate = crate::pki::TestPki::shared()
            .map_err(invalid)?
            .cps_certificate(&holder, &key.verifying_key().to_bytes())
            .map_err(|e| invalid(e.to_string()))?;
        let pin = Pin::new(&self.pin).ok_or_else(|| invalid("pin: 4 digits".into()))?;
        let puk = Puk::new(&self.puk).ok_or_else(|| invalid("puk: 8 digits".into()))?;
        let mut card = VirtualCps::new(&holder, &situations, pin, key)
            .with_puk(puk)
            .with_certificate(certificate);
        card.set_tries_left(self.pin_tries_left);
        Ok(card)
    }
}

impl VitaleProfile {
    /// The card's contents.
    pub fn data(&self) -> VitaleData {
        VitaleData {
            serial: self.serial.clone(),
            organism: Organism {
                regime: self.regime.clone(),
                caisse: self.caisse.clone(),
                centre: self.centre.clone(),
            },
            beneficiaries: self
                .beneficiaries
                .iter()
                .map(|b| Beneficiary {
                    surname: b.surname.clone(),
                    given_name: b.given_name.clone(),
                    birth_date: b.birth_date.clone(),
                    nir: if b.nir.len() == 13 {
                        nir(&b.nir)
                    } else {
                        b.nir.clone()
                    },
                    rank: b.rank,
                    rights_from: b.rights_from.clone(),
                    rights_until: b.rights_until.clone(),
                    coverages: b.coverages.clone(),
                })
                .collect(),
            public_key: test_key(&self.serial).verifying_key().to_bytes(),
            amc: self.amc.clone(),
            certificate: None,
        }
    }

    /// The simulated card, with its certificate from the test PKI.
    pub fn card(&self) -> Result<VirtualVitale, ProfileError> {
        let mut data = self.data();
        let pki = crate::pki::TestPki::shared().map_err(|message| ProfileError::Invalid {
            name: self.serial.clone(),
            message,
        })?;
        data.certificate = Some(
            pki.vitale_certificate(&self.serial, &data.public_key)
                .map_err(|e| ProfileError::Invalid {
                    name: self.serial.clone(),
                    message: e.to_string(),
                })?,
        );
        Ok(VirtualVitale::new(&data, test_key(&self.serial)))
    }
}

impl Profile {
    /// The simulated card of this profile, with its counters.
    pub fn card(
        &self,
    ) -> Result<(Box<dyn VirtualCard>, std::sync::Arc<crate::card::CardStats>), ProfileError> {
        match self {
            Profile::Cps(c) => {
                let card = c.card()?;
                let stats = card.stats();
                Ok((Box::new(card), stats))
            }
            Profile::Vitale(v) => {
                let card = v.card()?;
                let stats = card.stats();
                Ok((Box::new(card), stats))
            }
            Profile::Unknown(u) => {
                let card = crate::card::ForeignCard::new(hex::decode(&u.atr).unwrap_or_default());
                let stats = card.stats();
                Ok((Box::new(card), stats))
            }
        }
    }
}

fn builtin_cps(name: &str) -> CpsProfile {
    match Profile::load(name) {
        Ok(Profile::Cps(c)) => c,
        // Built-in profiles are checked by the test `every_builtin_profile_loads_and_reads_back`.
        _ => unreachable!("built-in CPS profile {name} is valid"),
    }
}

fn builtin_vitale(name: &str) -> VitaleProfile {
    match Profile::load(name) {
        Ok(Profile::Vitale(v)) => v,
        // Built-in profiles are checked by the test `every_builtin_profile_loads_and_reads_back`.
        _ => unreachable!("built-in Vitale profile {name} is valid"),
    }
}

/// The default CPS holder: Dr Claire MARTIN, médecin généraliste, two practices.
pub fn default_cps_holder() -> (CpsHolder, Vec<Situation>) {
    builtin_cps(DEFAULT_CPS).holder()
}

/// The default CPS card, PIN [`DEFAULT_PIN`], PUK [`DEFAULT_PUK`].
pub fn default_cps() -> VirtualCps {
    // The built-in profile and its certificate are valid: `every_builtin_profile_loads_and_reads_back`.
    builtin_cps(DEFAULT_CPS)
        .card()
        .unwrap_or_else(|e| unreachable!("default CPS profile is valid: {e}"))
}

/// The default Vitale contents: Jean DUPONT and his daughter Léa, régime général, CPAM Paris.
pub fn default_vitale_data() -> VitaleData {
    builtin_vitale(DEFAULT_VITALE).data()
}

/// The default Vitale card.
pub fn default_vitale() -> VirtualVitale {
    // The built-in profile and its certificate are valid: `every_builtin_profile_loads_and_reads_back`.
    builtin_vitale(DEFAULT_VITALE)
        .card()
        .unwrap_or_else(|e| unreachable!("default Vitale profile is valid: {e}"))
}

#[cfg(test)]
mod tests {
    use fse_formats::cards::{self, CardKind};
    use fse_formats::pki::{CertStatus, TrustStore};

    use super::*;
    use crate::card::InProcess;

    /// The trust store `fse-sim pki` writes, read back as fsed reads it.
    fn trust_store(now: i64) -> TrustStore {
        let pki = crate::pki::TestPki::new().unwrap();
        let mut store = TrustStore::new();
        store.add_certificates(pki.root_pem().as_bytes()).unwrap();
        store.add_certificates(pki.ca_pem().as_bytes()).unwrap();
        let crl = pki
            .crl_pem(
                &["CPS-0500".into()],
                &["VIT-0666".into()],
                time::OffsetDateTime::from_unix_timestamp(now).unwrap(),
            )
            .unwrap();
        assert_eq!(store.add_crls(crl.as_bytes()).unwrap(), 2);
        store
    }

    #[test]
    fn every_builtin_profile_loads_and_reads_back() {
        let now = 1_795_000_000; // 2026-11-17
        let store = trust_store(now);
        let mut serials = std::collections::HashSet::new();
        for (name, _) in BUILTIN {
            let p = Profile::load(name).unwrap_or_else(|e| panic!("{e}"));
            let (mut card, _) = p.card().unwrap();
            let mut ch = InProcess(card.as_mut());
            match &p {
                Profile::Cps(c) => {
                    assert!(serials.insert(c.serial.clone()), "{name}: serial reused");
                    let read = cards::read_cps(&mut ch).unwrap();
                    let (holder, situations) = c.holder();
                    assert_eq!(
                        (read.holder, read.situations),
                        (holder, situations),
                        "{name}"
                    );
                    assert!(ids::rpps_is_valid(&c.holder().0.national_id[1..]), "{name}");
                    let check =
                        store.check(read.certificate.as_deref().unwrap(), &read.public_key, now);
                    let expected = if c.revoked {
                        CertStatus::Revoked
                    } else if c.valid_until.as_str() < "20261117" {
                        CertStatus::Expired
                    } else {
                        CertStatus::Valid
                    };
                    assert_eq!(check.status, expected, "{name}: {check:?}");
                    assert!(
                        check.revocation_checked || expected == CertStatus::Expired,
                        "{name}"
                    );
                }
                Profile::Unknown(_) => {
                    assert_eq!(
                        cards::identify(&mut ch).unwrap(),
                        CardKind::Unknown,
                        "{name}"
                    );
                }
                Profile::Vitale(v) => {
                    assert_eq!(cards::identify(&mut ch).unwrap(), CardKind::Vitale);
                    assert!(serials.insert(v.serial.clone()), "{name}: serial reused");
                    let mut read = cards::read_vitale(&mut ch).unwrap();
                    let check =
                        store.check(read.certificate.as_deref().unwrap(), &read.public_key, now);
                    let expected = if v.opposed {
                        CertStatus::Revoked
                    } else {
                        CertStatus::Valid
                    };
                    assert_eq!(check.status, expected, "{name}: {check:?}");
                    // A certificate for another card's key is refused.
                    assert_eq!(
                        store
                            .check(read.certificate.as_deref().unwrap(), &[9; 32], now)
                            .status,
                        CertStatus::KeyMismatch
                    );
                    read.certificate = None;
                    assert_eq!(read, v.data(), "{name}");
                    assert!(
                        read.beneficiaries.iter().all(|b| ids::nir_is_valid(&b.nir)),
                        "{name}"
                    );
                }
            }
        }
    }

    #[test]
    fn scripted_situations_hold() {
        let Profile::Cps(blocked) = Profile::load("cps-pin-blocked").unwrap() else {
            panic!()
        };
        let mut card = blocked.card().unwrap();
        assert_eq!(
            cards::pin_tries_left(&mut InProcess(&mut card)).unwrap(),
            Some(0)
        );
        let Profile::Cps(eight) = Profile::load("cps-huit-situations").unwrap() else {
            panic!()
        };
        assert_eq!(
            cards::read_cps(&mut InProcess(&mut eight.card().unwrap()))
                .unwrap()
                .situations
                .len(),
            8
        );
        let Profile::Cps(cpe) = Profile::load("cpe-secretaire").unwrap() else {
            panic!()
        };
        assert_eq!(cpe.holder().0.card_type, CardType::Cpe);
        let Profile::Vitale(four) = Profile::load("vitale-famille-quatre").unwrap() else {
            panic!()
        };
        assert_eq!(four.data().beneficiaries.len(), 4);
    }

    #[test]
    fn bad_profiles_name_the_field() {
        let err = Profile::parse("t", "kind = \"cps\"\nserial = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("card_type"), "{err}");
        let err = Profile::load("no-such-profile").unwrap_err().to_string();
        assert!(
            err.contains("cps-medecin-generaliste"),
            "lists the built-in names: {err}"
        );
        let bad_nir = "kind = \"vitale\"\nserial = \"v\"\nregime = \"01\"\ncaisse = \"751\"\ncentre = \"0001\"\n[[beneficiaries]]\nsurname = \"A\"\ngiven_name = \"B\"\nbirth_date = \"19800101\"\nnir = \"185057800608400\"\nrights_from = \"20250101\"\nrights_until = \"20301231\"\n";
        assert!(Profile::parse("t", bad_nir)
            .unwrap_err()
            .to_string()
            .contains("nir"));
    }
}
