//! What the two cards hold, as fsed reads it: the CPS holder and his situations d'exercice,
//! the Vitale card's insurer, beneficiaries, coverages and AMC, and what a card turned out to
//! be.

use serde::{Deserialize, Serialize};

use crate::channel::CardError;

/// Kinds of professional card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CardType {
    /// Carte de professionnel de santé: signs sheets and lots.
    Cps,
    /// Carte de personnel d'établissement (staff): reads and prepares, never signs.
    Cpe,
}

impl CardType {
    pub(super) fn code(self) -> u8 {
        match self {
            CardType::Cps => 0,
            CardType::Cpe => 1,
        }
    }
    pub(super) fn from_code(c: u8) -> Result<Self, CardError> {
        match c {
            0 => Ok(CardType::Cps),
            1 => Ok(CardType::Cpe),
            other => Err(CardError::Data(format!("unknown card type {other}"))),
        }
    }
}

/// The professional identified by a CPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpsHolder {
    /// Card type.
    pub card_type: CardType,
    /// Card serial number.
    pub serial: String,
    /// National identifier: `8` + RPPS (11 digits) or `0` + ADELI (9 digits).
    pub national_id: String,
    /// Surname (nom d'exercice).
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// Profession code (e.g. `10` médecin).
    pub profession: String,
    /// Specialty code (e.g. `01` médecine générale).
    pub specialty: String,
    /// Last day of validity, `YYYYMMDD`.
    pub valid_until: String,
}

/// One situation d'exercice (mode and place of practice) on a CPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Situation {
    /// Index on the card (file `D120` + index).
    pub index: u8,
    /// Insurance billing number (numéro de facturation, 8 characters with its key).
    pub billing_number: String,
    /// Place of practice.
    pub place: String,
    /// Convention sector (1, 2 …).
    pub sector: u8,
    /// Whether the card may sign invoices in this situation.
    pub may_sign_invoice: bool,
    /// Whether the card may sign lots in this situation.
    pub may_sign_lot: bool,
    /// Mode d'exercice: libéral, salarié or remplaçant (tag `85`, absent = libéral).
    #[serde(default)]
    pub mode: ExerciseMode,
}

/// The mode d'exercice of a situation. A remplaçant bills in the name of the practitioner he
/// replaces, whom the sheet must name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExerciseMode {
    /// Libéral, in his own name (code 0).
    #[default]
    Liberal,
    /// Salarié of a health centre (code 1).
    Salarie,
    /// Remplaçant of a libéral practitioner (code 2).
    Remplacant,
}

impl ExerciseMode {
    /// The card's code.
    pub fn code(self) -> u8 {
        match self {
            ExerciseMode::Liberal => 0,
            ExerciseMode::Salarie => 1,
            ExerciseMode::Remplacant => 2,
        }
    }

    /// From the card's code.
    pub fn from_code(code: u8) -> Option<ExerciseMode> {
        match code {
            0 => Some(ExerciseMode::Liberal),
            1 => Some(ExerciseMode::Salarie),
            2 => Some(ExerciseMode::Remplacant),
            _ => None,
        }
    }
}

/// Everything fsed reads from a CPS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpsData {
    /// The holder.
    pub holder: CpsHolder,
    /// Situations d'exercice, at most [`MAX_SITUATIONS`].
    pub situations: Vec<Situation>,
    /// Ed25519 signature public key.
    #[serde(with = "hex_bytes32")]
    pub public_key: [u8; 32],
    /// The card's X.509 certificate (DER), when it holds one. Not serialized: the API shows the
    /// outcome of its check instead.
    #[serde(skip)]
    pub certificate: Option<Vec<u8>>,
}

/// The insurer (AMO organism) of a Vitale card: régime, caisse, centre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organism {
    /// Régime, 2 digits (01 = régime général).
    pub regime: String,
    /// Caisse, 3 digits.
    pub caisse: String,
    /// Centre, 4 digits.
    pub centre: String,
}

impl Organism {
    /// The 9-digit organism code used as a routing destination.
    pub fn code(&self) -> String {
        format!("{}{}{}", self.regime, self.caisse, self.centre)
    }
}

/// One beneficiary held on a Vitale card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beneficiary {
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// Birth date `YYYYMMDD`.
    pub birth_date: String,
    /// NIR with its key (15 characters).
    pub nir: String,
    /// Birth rank (for twins), 1 by default.
    pub rank: u8,
    /// First day of open AMO rights, `YYYYMMDD`.
    pub rights_from: String,
    /// Last day of open AMO rights, `YYYYMMDD`.
    pub rights_until: String,
    /// Coverage periods that change what the AMO pays (ALD, maternity, AT/MP, CSS).
    #[serde(default)]
    pub coverages: Vec<Coverage>,
}

/// Kinds of coverage period held for a beneficiary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageKind {
    /// Affection de longue durée: care for the ALD is exempt from the ticket modérateur.
    Ald,
    /// Maternity insurance (from the 6th month of pregnancy to 12 days after birth).
    Maternite,
    /// Accident du travail / maladie professionnelle.
    AtMp,
    /// Complémentaire santé solidaire: no participation, tiers payant on both shares.
    Css,
}

impl CoverageKind {
    pub(super) fn code(self) -> u8 {
        match self {
            CoverageKind::Ald => 1,
            CoverageKind::Maternite => 2,
            CoverageKind::AtMp => 3,
            CoverageKind::Css => 4,
        }
    }
    pub(super) fn from_code(c: u8) -> Result<Self, CardError> {
        match c {
            1 => Ok(CoverageKind::Ald),
            2 => Ok(CoverageKind::Maternite),
            3 => Ok(CoverageKind::AtMp),
            4 => Ok(CoverageKind::Css),
            other => Err(CardError::Data(format!("unknown coverage kind {other}"))),
        }
    }
}

/// One coverage period of a beneficiary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// What is covered.
    pub kind: CoverageKind,
    /// First day, `YYYYMMDD`.
    pub from: String,
    /// Last day, `YYYYMMDD`.
    pub until: String,
}

/// The supplementary insurer (AMC: mutuelle, assurance) held on a Vitale card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amc {
    /// AMC number (numéro d'organisme complémentaire, 8 digits).
    pub number: String,
    /// AMC name.
    pub name: String,
    /// The AMC pays the practitioner directly (a DRE goes to it); otherwise through the AMO.
    pub direct: bool,
    /// Tiers payant: the patient pays nothing of the AMC share.
    pub tiers_payant: bool,
    /// First day of the contract, `YYYYMMDD`.
    pub from: String,
    /// Last day of the contract, `YYYYMMDD`.
    pub until: String,
}

/// Everything fsed reads from a Vitale card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VitaleData {
    /// Card serial number.
    pub serial: String,
    /// The AMO organism.
    pub organism: Organism,
    /// Beneficiaries, the assuré first.
    pub beneficiaries: Vec<Beneficiary>,
    /// Ed25519 proof-of-presence public key.
    #[serde(with = "hex_bytes32")]
    pub public_key: [u8; 32],
    /// The supplementary insurer, when the patient has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amc: Option<Amc>,
    /// The card's X.509 certificate (DER), when it holds one (not serialized).
    #[serde(skip)]
    pub certificate: Option<Vec<u8>>,
}

/// What a card in a reader turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CardKind {
    /// A professional card.
    Cps,
    /// A patient's card.
    Vitale,
    /// Neither application answered.
    Unknown,
}

mod hex_bytes32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}
