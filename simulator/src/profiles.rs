//! The default simulated cards: a médecin généraliste's CPS and a family's
//! Vitale card. Their keys are derived from the card serial (test keys,
//! reproducible across runs); they never leave the simulator.

use ed25519_dalek::SigningKey;
use fse_formats::cards::{
    Beneficiary, CardType, CpsHolder, Organism, Pin, Puk, Situation, VitaleData,
};
use fse_formats::ids;
use sha2::{Digest, Sha256};

use crate::card::{VirtualCps, VirtualVitale};

/// PIN of the default CPS.
pub const DEFAULT_PIN: &str = "1234";
/// Unblocking code (PUK) of the default CPS, as on its PIN letter.
pub const DEFAULT_PUK: &str = "12345678";

/// The test key of a card, derived from its serial.
pub fn test_key(serial: &str) -> SigningKey {
    SigningKey::from_bytes(&Sha256::digest(format!("fsed-sim:{serial}")).into())
}

/// An RPPS number (11 digits with its Luhn key) from a 10-digit stem.
pub fn rpps(stem10: &str) -> String {
    format!("{stem10}{}", ids::luhn_key(stem10).unwrap_or(0))
}

/// A NIR with its key from 13 characters.
pub fn nir(nir13: &str) -> String {
    format!("{nir13}{:02}", ids::nir_key(nir13).unwrap_or(0))
}

/// The default CPS holder: Dr Claire MARTIN, médecin généraliste, two practices.
pub fn default_cps_holder() -> (CpsHolder, Vec<Situation>) {
    let holder = CpsHolder {
        card_type: CardType::Cps,
        serial: "CPS-0001".into(),
        national_id: format!("8{}", rpps("1000000000")),
        surname: "MARTIN".into(),
        given_name: "Claire".into(),
        profession: "10".into(),
        specialty: "01".into(),
        valid_until: "20291231".into(),
    };
    let situations = vec![
        Situation {
            index: 0,
            billing_number: "75123456".into(),
            place: "Cabinet du Parc, 75011 Paris".into(),
            sector: 1,
            may_sign_invoice: true,
            may_sign_lot: true,
        },
        Situation {
            index: 1,
            billing_number: "93123457".into(),
            place: "Maison de santé, 93100 Montreuil".into(),
            sector: 1,
            may_sign_invoice: true,
            may_sign_lot: true,
        },
    ];
    (holder, situations)
}

/// The default CPS card, PIN [`DEFAULT_PIN`].
pub fn default_cps() -> VirtualCps {
    let (holder, situations) = default_cps_holder();
    let key = test_key(&holder.serial);
    // DEFAULT_PIN is four digits, so Pin::new accepts it.
    let pin = Pin::new(DEFAULT_PIN).unwrap_or_else(|| unreachable!("DEFAULT_PIN is 4 digits"));
    let card = VirtualCps::new(&holder, &situations, pin, key);
    match Puk::new(DEFAULT_PUK) {
        Some(puk) => card.with_puk(puk),
        None => card,
    }
}

/// The default Vitale contents: Jean DUPONT and his daughter Léa, régime général, CPAM Paris.
pub fn default_vitale_data() -> VitaleData {
    let key = test_key("VIT-0001");
    VitaleData {
        serial: "VIT-0001".into(),
        organism: Organism {
            regime: "01".into(),
            caisse: "751".into(),
            centre: "0001".into(),
        },
        beneficiaries: vec![
            Beneficiary {
                surname: "DUPONT".into(),
                given_name: "Jean".into(),
                birth_date: "19850512".into(),
                nir: nir("1850578006084"),
                rank: 1,
                rights_from: "20250101".into(),
                rights_until: "20301231".into(),
            },
            Beneficiary {
                surname: "DUPONT".into(),
                given_name: "Léa".into(),
                birth_date: "20150301".into(),
                nir: nir("2150375112345"),
                rank: 1,
                rights_from: "20250101".into(),
                rights_until: "20301231".into(),
            },
        ],
        public_key: key.verifying_key().to_bytes(),
    }
}

/// The default Vitale card.
pub fn default_vitale() -> VirtualVitale {
    let data = default_vitale_data();
    VirtualVitale::new(&data, test_key(&data.serial))
}
