//! The two card applications — CPS (the professional's card) and carte Vitale
//! (the patient's) — their files, their TLV layouts and the card exchanges
//! written against [`CardChannel`]. `formats/CARDS.md` documents the same.
//!
//! The simulator encodes these files with the `encode_*` functions; the daemon
//! reads them with the `read_*` exchanges: both sides share this module.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::apdu::{
    self, Command, INS_CHANGE_REFERENCE_DATA, INS_INTERNAL_AUTHENTICATE, INS_PSO, INS_READ_BINARY,
    INS_RESET_RETRY_COUNTER, INS_SELECT, INS_VERIFY,
};
use crate::channel::{exchange, expect_ok, CardChannel, CardError};
use crate::tlv::{self, Records};

/// AID of the CPS application (the public CPS3 IAS-ECC AID).
pub const AID_CPS: &[u8] = &[
    0xE8, 0x28, 0xBD, 0x08, 0x0F, 0x80, 0x25, 0x00, 0x00, 0x01, 0xFF, 0x00, 0x10,
];
/// AID of the Vitale application ("VITALE").
pub const AID_VITALE: &[u8] = &[
    0xD2, 0x50, 0x00, 0x00, 0x02, 0x56, 0x49, 0x54, 0x41, 0x4C, 0x45,
];

/// CPS file: holder identity.
pub const EF_CPS_HOLDER: u16 = 0xD100;
/// CPS file: signature public key.
pub const EF_CPS_KEY: u16 = 0xD101;
/// CPS file: the card's X.509 certificate (DER, Ed25519 per RFC 8410), issued by the CPS CA.
pub const EF_CPS_CERT: u16 = 0xD102;
/// CPS files: situations d'exercice, `D120` + index (0..=15).
pub const EF_CPS_SITUATION_BASE: u16 = 0xD120;
/// Vitale file: card and insurer identity.
pub const EF_VITALE_ID: u16 = 0x0101;
/// Vitale file: beneficiaries.
pub const EF_VITALE_BENEFICIARIES: u16 = 0x0102;
/// Vitale file: proof-of-presence public key.
pub const EF_VITALE_KEY: u16 = 0x0103;
/// Vitale file: the supplementary insurer (AMC) block; absent when the patient has none.
pub const EF_VITALE_AMC: u16 = 0x0104;
/// Vitale file: the card's X.509 certificate (DER, Ed25519), issued by the Vitale CA.
pub const EF_VITALE_CERT: u16 = 0x0105;

/// PIN reference of the CPS holder PIN (P2 of VERIFY).
pub const PIN_REF: u8 = 0x81;
/// Longest situation list a CPS holds.
pub const MAX_SITUATIONS: usize = 8;

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
    fn code(self) -> u8 {
        match self {
            CardType::Cps => 0,
            CardType::Cpe => 1,
        }
    }
    fn from_code(c: u8) -> Result<Self, CardError> {
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
    fn code(self) -> u8 {
        match self {
            CoverageKind::Ald => 1,
            CoverageKind::Maternite => 2,
            CoverageKind::AtMp => 3,
            CoverageKind::Css => 4,
        }
    }
    fn from_code(c: u8) -> Result<Self, CardError> {
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

/// A CPS PIN: 4 digits, zeroized when dropped, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Pin(String);

impl Pin {
    /// Accepts exactly 4 ASCII digits.
    pub fn new(digits: &str) -> Option<Pin> {
        (digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Pin(digits.to_string()))
    }

    /// The PIN block sent in VERIFY: ASCII digits padded with `FF` to 8 bytes.
    pub fn block(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(vec![0xFF; 8]);
        b[..self.0.len()].copy_from_slice(self.0.as_bytes());
        b
    }

    /// Compares against a PIN block without early exit.
    pub fn matches_block(&self, block: &[u8]) -> bool {
        let own = self.block();
        block.len() == own.len()
            && own.iter().zip(block).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pin(****)")
    }
}

/// The 8-digit unblocking code (PUK) from the PIN letter, zeroized when dropped, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Puk(String);

impl Puk {
    /// Accepts exactly 8 ASCII digits.
    pub fn new(digits: &str) -> Option<Puk> {
        (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| Puk(digits.to_string()))
    }

    /// The 8 ASCII digits sent in RESET RETRY COUNTER.
    pub fn block(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.as_bytes().to_vec())
    }

    /// Compares against a PUK block without early exit.
    pub fn matches_block(&self, block: &[u8]) -> bool {
        let own = self.block();
        block.len() == own.len()
            && own.iter().zip(block).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for Puk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Puk(********)")
    }
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

// ---------------------------------------------------------------- encoding

/// Encodes the CPS holder file.
pub fn encode_cps_holder(h: &CpsHolder) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, &[h.card_type.code()]);
    tlv::push(&mut out, 0x81, h.serial.as_bytes());
    tlv::push(&mut out, 0x82, h.national_id.as_bytes());
    tlv::push(&mut out, 0x83, h.surname.as_bytes());
    tlv::push(&mut out, 0x84, h.given_name.as_bytes());
    tlv::push(&mut out, 0x85, h.profession.as_bytes());
    tlv::push(&mut out, 0x86, h.specialty.as_bytes());
    tlv::push(&mut out, 0x87, h.valid_until.as_bytes());
    out
}

/// Encodes one situation file.
pub fn encode_situation(s: &Situation) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, &[s.index]);
    tlv::push(&mut out, 0x81, s.billing_number.as_bytes());
    tlv::push(&mut out, 0x82, s.place.as_bytes());
    tlv::push(&mut out, 0x83, &[s.sector]);
    tlv::push(
        &mut out,
        0x84,
        &[u8::from(s.may_sign_invoice) | (u8::from(s.may_sign_lot) << 1)],
    );
    if s.mode != ExerciseMode::Liberal {
        tlv::push(&mut out, 0x85, &[s.mode.code()]);
    }
    out
}

/// Encodes a public-key file.
pub fn encode_key(public_key: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, public_key);
    out
}

/// Encodes the Vitale identity file.
pub fn encode_vitale_id(v: &VitaleData) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, v.serial.as_bytes());
    tlv::push(&mut out, 0x81, v.organism.regime.as_bytes());
    tlv::push(&mut out, 0x82, v.organism.caisse.as_bytes());
    tlv::push(&mut out, 0x83, v.organism.centre.as_bytes());
    out
}

/// Encodes the Vitale beneficiaries file: one template `65` per beneficiary.
pub fn encode_beneficiaries(list: &[Beneficiary]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in list {
        let mut inner = Vec::new();
        tlv::push(&mut inner, 0x80, b.surname.as_bytes());
        tlv::push(&mut inner, 0x81, b.given_name.as_bytes());
        tlv::push(&mut inner, 0x82, b.birth_date.as_bytes());
        tlv::push(&mut inner, 0x83, b.nir.as_bytes());
        tlv::push(&mut inner, 0x84, &[b.rank]);
        tlv::push(&mut inner, 0x85, b.rights_from.as_bytes());
        tlv::push(&mut inner, 0x86, b.rights_until.as_bytes());
        for c in &b.coverages {
            let mut cov = Vec::new();
            tlv::push(&mut cov, 0x80, &[c.kind.code()]);
            tlv::push(&mut cov, 0x81, c.from.as_bytes());
            tlv::push(&mut cov, 0x82, c.until.as_bytes());
            tlv::push(&mut inner, 0xA7, &cov);
        }
        tlv::push(&mut out, 0x65, &inner);
    }
    out
}

/// Encodes the Vitale AMC file.
pub fn encode_amc(a: &Amc) -> Vec<u8> {
    let mut out = Vec::new();
    tlv::push(&mut out, 0x80, a.number.as_bytes());
    tlv::push(&mut out, 0x81, a.name.as_bytes());
    tlv::push(
        &mut out,
        0x82,
        &[u8::from(a.direct) | (u8::from(a.tiers_payant) << 1)],
    );
    tlv::push(&mut out, 0x83, a.from.as_bytes());
    tlv::push(&mut out, 0x84, a.until.as_bytes());
    out
}

// ---------------------------------------------------------------- exchanges

/// SELECT an application by AID.
pub fn select_aid<C: CardChannel + ?Sized>(ch: &mut C, aid: &[u8]) -> Result<(), CardError> {
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_SELECT, 0x04, 0x0C).with_data(aid),
    )?;
    match resp.sw {
        apdu::SW_OK => Ok(()),
        apdu::SW_FILE_NOT_FOUND => Err(CardError::WrongCard),
        sw => Err(CardError::Status {
            command: "SELECT",
            sw,
        }),
    }
}

/// SELECT an elementary file by its identifier.
pub fn select_file<C: CardChannel + ?Sized>(ch: &mut C, fid: u16) -> Result<(), CardError> {
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_SELECT, 0x02, 0x0C).with_data(fid.to_be_bytes()),
    )?;
    match resp.sw {
        apdu::SW_OK => Ok(()),
        apdu::SW_FILE_NOT_FOUND => Err(CardError::FileNotFound(fid)),
        sw => Err(CardError::Status {
            command: "SELECT",
            sw,
        }),
    }
}

/// Reads the whole current EF with READ BINARY, 256 bytes at a time.
pub fn read_current_file<C: CardChannel + ?Sized>(ch: &mut C) -> Result<Vec<u8>, CardError> {
    let mut out = Vec::new();
    loop {
        if out.len() > 0x7FFF {
            return Err(CardError::Data("file larger than 32 KiB".into()));
        }
        let offset = out.len() as u16;
        let [hi, lo] = offset.to_be_bytes();
        let resp = exchange(
            ch,
            &Command::new(0x00, INS_READ_BINARY, hi, lo).with_le(256),
        )?;
        match resp.sw {
            apdu::SW_OK => {
                let n = resp.data.len();
                out.extend_from_slice(&resp.data);
                if n < 256 {
                    return Ok(out);
                }
            }
            apdu::SW_END_OF_FILE => {
                out.extend_from_slice(&resp.data);
                return Ok(out);
            }
            apdu::SW_WRONG_PARAMETERS if !out.is_empty() => return Ok(out),
            apdu::SW_SECURITY_NOT_SATISFIED => return Err(CardError::PinRequired),
            sw => {
                return Err(CardError::Status {
                    command: "READ BINARY",
                    sw,
                })
            }
        }
    }
}

/// Selects then reads one EF.
pub fn read_file<C: CardChannel + ?Sized>(ch: &mut C, fid: u16) -> Result<Vec<u8>, CardError> {
    select_file(ch, fid)?;
    read_current_file(ch)
}

/// Finds which application the card holds.
pub fn identify<C: CardChannel + ?Sized>(ch: &mut C) -> Result<CardKind, CardError> {
    match select_aid(ch, AID_CPS) {
        Ok(()) => return Ok(CardKind::Cps),
        Err(CardError::WrongCard) => {}
        Err(e) => return Err(e),
    }
    match select_aid(ch, AID_VITALE) {
        Ok(()) => Ok(CardKind::Vitale),
        Err(CardError::WrongCard) => Ok(CardKind::Unknown),
        Err(e) => Err(e),
    }
}

fn read_key<C: CardChannel + ?Sized>(ch: &mut C, fid: u16) -> Result<[u8; 32], CardError> {
    let raw = read_file(ch, fid)?;
    let recs = Records::new(&raw)?;
    recs.bytes(0x80)?
        .try_into()
        .map_err(|_| CardError::Data(format!("key file {fid:04X}: expected 32 bytes")))
}

/// Reads an EF that a card may not hold: `None` when the card answers "file not found".
fn read_optional<C: CardChannel + ?Sized>(
    ch: &mut C,
    fid: u16,
) -> Result<Option<Vec<u8>>, CardError> {
    match read_file(ch, fid) {
        Ok(raw) => Ok(Some(raw)),
        Err(CardError::FileNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads a CPS: holder, situations, public key.
pub fn read_cps<C: CardChannel + ?Sized>(ch: &mut C) -> Result<CpsData, CardError> {
    select_aid(ch, AID_CPS)?;
    let raw = read_file(ch, EF_CPS_HOLDER)?;
    let r = Records::new(&raw)?;
    let holder = CpsHolder {
        card_type: CardType::from_code(r.byte(0x80)?)?,
        serial: r.text(0x81)?,
        national_id: r.text(0x82)?,
        surname: r.text(0x83)?,
        given_name: r.text(0x84)?,
        profession: r.text(0x85)?,
        specialty: r.text(0x86)?,
        valid_until: r.text(0x87)?,
    };
    let mut situations = Vec::new();
    for i in 0..MAX_SITUATIONS as u16 {
        let raw = match read_file(ch, EF_CPS_SITUATION_BASE + i) {
            Ok(raw) => raw,
            Err(CardError::FileNotFound(_)) => break,
            Err(e) => return Err(e),
        };
        let r = Records::new(&raw)?;
        let flags = r.byte(0x84)?;
        situations.push(Situation {
            index: r.byte(0x80)?,
            billing_number: r.text(0x81)?,
            place: r.text(0x82)?,
            sector: r.byte(0x83)?,
            may_sign_invoice: flags & 1 != 0,
            may_sign_lot: flags & 2 != 0,
            mode: match r.get(0x85) {
                None => ExerciseMode::Liberal,
                Some([code]) => ExerciseMode::from_code(*code).ok_or_else(|| {
                    CardError::Data(format!("situation: unknown mode d'exercice {code}"))
                })?,
                Some(_) => {
                    return Err(CardError::Data(
                        "situation: mode d'exercice is one byte".into(),
                    ))
                }
            },
        });
    }
    let public_key = read_key(ch, EF_CPS_KEY)?;
    let certificate = read_optional(ch, EF_CPS_CERT)?;
    Ok(CpsData {
        holder,
        situations,
        public_key,
        certificate,
    })
}

/// Reads a Vitale card: identity, beneficiaries, public key.
pub fn read_vitale<C: CardChannel + ?Sized>(ch: &mut C) -> Result<VitaleData, CardError> {
    select_aid(ch, AID_VITALE)?;
    let raw = read_file(ch, EF_VITALE_ID)?;
    let r = Records::new(&raw)?;
    let serial = r.text(0x80)?;
    let organism = Organism {
        regime: r.text(0x81)?,
        caisse: r.text(0x82)?,
        centre: r.text(0x83)?,
    };
    let raw = read_file(ch, EF_VITALE_BENEFICIARIES)?;
    let list = Records::new(&raw)?;
    let mut beneficiaries = Vec::new();
    for tpl in list.all(0x65) {
        let b = Records::new(tpl)?;
        beneficiaries.push(Beneficiary {
            surname: b.text(0x80)?,
            given_name: b.text(0x81)?,
            birth_date: b.text(0x82)?,
            nir: b.text(0x83)?,
            rank: b.byte(0x84)?,
            rights_from: b.text(0x85)?,
            rights_until: b.text(0x86)?,
            coverages: b
                .all(0xA7)
                .map(|c| {
                    let c = Records::new(c)?;
                    Ok(Coverage {
                        kind: CoverageKind::from_code(c.byte(0x80)?)?,
                        from: c.text(0x81)?,
                        until: c.text(0x82)?,
                    })
                })
                .collect::<Result<_, CardError>>()?,
        });
    }
    let public_key = read_key(ch, EF_VITALE_KEY)?;
    let amc = match read_optional(ch, EF_VITALE_AMC)? {
        None => None,
        Some(raw) => {
            let r = Records::new(&raw)?;
            let flags = r.byte(0x82)?;
            Some(Amc {
                number: r.text(0x80)?,
                name: r.text(0x81)?,
                direct: flags & 1 != 0,
                tiers_payant: flags & 2 != 0,
                from: r.text(0x83)?,
                until: r.text(0x84)?,
            })
        }
    };
    let certificate = read_optional(ch, EF_VITALE_CERT)?;
    Ok(VitaleData {
        serial,
        organism,
        beneficiaries,
        public_key,
        amc,
        certificate,
    })
}

/// Presents the PIN to the CPS. Never retried here: a wrong PIN reports the tries left.
pub fn verify_pin<C: CardChannel + ?Sized>(ch: &mut C, pin: &Pin) -> Result<(), CardError> {
    select_aid(ch, AID_CPS)?;
    let block = pin.block();
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_VERIFY, 0x00, PIN_REF).with_data(block.as_slice()),
    )?;
    pin_status(resp.sw)
}

/// Changes the PIN (CHANGE REFERENCE DATA: old PIN block then new PIN block).
pub fn change_pin<C: CardChannel + ?Sized>(
    ch: &mut C,
    old: &Pin,
    new: &Pin,
) -> Result<(), CardError> {
    select_aid(ch, AID_CPS)?;
    let mut data = Zeroizing::new(Vec::with_capacity(16));
    data.extend_from_slice(&old.block());
    data.extend_from_slice(&new.block());
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_CHANGE_REFERENCE_DATA, 0x00, PIN_REF).with_data(data.as_slice()),
    )?;
    pin_status(resp.sw)
}

/// Unblocks the PIN with the PUK and sets a new PIN (RESET RETRY COUNTER: PUK then new PIN block).
///
/// A wrong PUK reports the PUK tries left as [`CardError::WrongPin`]; a blocked PUK as [`CardError::PinBlocked`].
pub fn unblock_pin<C: CardChannel + ?Sized>(
    ch: &mut C,
    puk: &Puk,
    new: &Pin,
) -> Result<(), CardError> {
    select_aid(ch, AID_CPS)?;
    let mut data = Zeroizing::new(Vec::with_capacity(16));
    data.extend_from_slice(&puk.block());
    data.extend_from_slice(&new.block());
    let resp = exchange(
        ch,
        &Command::new(0x00, INS_RESET_RETRY_COUNTER, 0x00, PIN_REF).with_data(data.as_slice()),
    )?;
    pin_status(resp.sw)
}

/// Asks the CPS how many PIN tries are left (VERIFY with no data); `Ok(None)` when verified already.
pub fn pin_tries_left<C: CardChannel + ?Sized>(ch: &mut C) -> Result<Option<u8>, CardError> {
    select_aid(ch, AID_CPS)?;
    let resp = exchange(ch, &Command::new(0x00, INS_VERIFY, 0x00, PIN_REF))?;
    match pin_status(resp.sw) {
        Ok(()) => Ok(None),
        Err(CardError::WrongPin { tries_left }) => Ok(Some(tries_left)),
        Err(CardError::PinBlocked) => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

fn pin_status(sw: u16) -> Result<(), CardError> {
    match sw {
        apdu::SW_OK => Ok(()),
        sw if sw & 0xFFF0 == 0x63C0 => match (sw & 0x0F) as u8 {
            0 => Err(CardError::PinBlocked),
            n => Err(CardError::WrongPin { tries_left: n }),
        },
        apdu::SW_AUTH_BLOCKED => Err(CardError::PinBlocked),
        sw => Err(CardError::Status {
            command: "VERIFY",
            sw,
        }),
    }
}

/// Has the CPS sign `message` (PSO: COMPUTE DIGITAL SIGNATURE, Ed25519).
pub fn cps_sign<C: CardChannel + ?Sized>(
    ch: &mut C,
    message: &[u8],
) -> Result<[u8; 64], CardError> {
    let cmd = Command::new(0x00, INS_PSO, 0x9E, 0x9A)
        .with_data(message)
        .with_le(256);
    let sig = expect_ok(ch, "PSO: COMPUTE DIGITAL SIGNATURE", &cmd)?;
    sig.try_into()
        .map_err(|_| CardError::Data("signature is not 64 bytes".into()))
}

/// Has the Vitale card sign a 32-byte challenge (INTERNAL AUTHENTICATE): the proof of presence.
pub fn vitale_authenticate<C: CardChannel + ?Sized>(
    ch: &mut C,
    challenge: &[u8; 32],
) -> Result<[u8; 64], CardError> {
    select_aid(ch, AID_VITALE)?;
    vitale_authenticate_selected(ch, challenge)
}

/// INTERNAL AUTHENTICATE alone, for a caller that knows the Vitale application is still
/// selected since its last exchange with this card (one APDU instead of two). A card
/// reset or another selection in between makes the card refuse it with a status word.
pub fn vitale_authenticate_selected<C: CardChannel + ?Sized>(
    ch: &mut C,
    challenge: &[u8; 32],
) -> Result<[u8; 64], CardError> {
    let cmd = Command::new(0x00, INS_INTERNAL_AUTHENTICATE, 0x00, 0x00)
        .with_data(challenge.as_slice())
        .with_le(256);
    let sig = expect_ok(ch, "INTERNAL AUTHENTICATE", &cmd)?;
    sig.try_into()
        .map_err(|_| CardError::Data("authentication answer is not 64 bytes".into()))
}

/// Checks an Ed25519 signature made by a card.
pub fn verify_signature(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public_key) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &sig).is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_accepts_four_digits_only_and_hides_itself() {
        assert!(Pin::new("1234").is_some());
        assert!(Pin::new("123").is_none());
        assert!(Pin::new("12a4").is_none());
        let pin = Pin::new("1234").unwrap();
        assert_eq!(format!("{pin:?}"), "Pin(****)");
        assert_eq!(pin.block().as_slice(), b"1234\xFF\xFF\xFF\xFF");
        assert!(pin.matches_block(b"1234\xFF\xFF\xFF\xFF"));
        assert!(!pin.matches_block(b"1235\xFF\xFF\xFF\xFF"));
    }

    /// A card that answers whatever the test says, then `6A82`.
    struct Scripted(std::collections::VecDeque<Vec<u8>>);

    impl CardChannel for Scripted {
        fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, crate::channel::ChannelError> {
            Ok(self.0.pop_front().unwrap_or_else(|| vec![0x6A, 0x82]))
        }
    }

    proptest::proptest! {
        #[test]
        fn card_readers_never_panic_on_arbitrary_answers(
            answers in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..300), 0..40)
        ) {
            let _ = read_cps(&mut Scripted(answers.clone().into()));
            let _ = read_vitale(&mut Scripted(answers.clone().into()));
            let _ = identify(&mut Scripted(answers.clone().into()));
            let _ = pin_tries_left(&mut Scripted(answers.clone().into()));
            let _ = cps_sign(&mut Scripted(answers.clone().into()), b"m");
            let _ = vitale_authenticate(&mut Scripted(answers.into()), &[0; 32]);
        }

        #[test]
        fn card_readers_never_panic_on_well_framed_arbitrary_files(
            files in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 1..12)
        ) {
            // Every SELECT succeeds and every READ BINARY returns one of the files: the TLV layer sees garbage.
            let mut answers = std::collections::VecDeque::new();
            for f in &files {
                answers.push_back(vec![0x90, 0x00]);
                answers.push_back(vec![0x90, 0x00]);
                let mut r = f.clone();
                r.extend_from_slice(&[0x90, 0x00]);
                answers.push_back(r);
            }
            let _ = read_cps(&mut Scripted(answers.clone()));
            let _ = read_vitale(&mut Scripted(answers));
        }
    }

    #[test]
    fn pin_status_words_map_to_errors() {
        assert_eq!(
            pin_status(0x63C2),
            Err(CardError::WrongPin { tries_left: 2 })
        );
        assert_eq!(pin_status(0x63C0), Err(CardError::PinBlocked));
        assert_eq!(pin_status(0x6983), Err(CardError::PinBlocked));
        assert_eq!(pin_status(0x9000), Ok(()));
    }
}
