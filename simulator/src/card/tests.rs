//! Tests of the virtual cards: files, PIN and PUK, signatures, status words, ATRs.

use fse_formats::apdu::Command;
use fse_formats::cards::{self, CardKind, Pin};
use fse_formats::channel::{exchange, CardError};

use ed25519_dalek::Signer;

use super::common::CardKey;
use super::*;
use crate::profiles;

#[test]
fn a_card_signs_as_ed25519_dalek_does_with_its_key() {
    for name in ["cps", "vitale", "other"] {
        let key = profiles::test_key(name);
        let card = CardKey::new(key.clone());
        assert!(card.fast.is_some(), "aws-lc-rs takes the key");
        for message in [&b""[..], b"lot header", &[0x5a; 32], &[7; 1000]] {
            assert_eq!(card.sign(message), key.sign(message).to_bytes().to_vec());
        }
    }
}

fn status(card: &mut dyn VirtualCard, cmd: Command) -> u16 {
    exchange(&mut InProcess(card), &cmd).unwrap().sw
}

#[test]
fn the_daemon_reads_the_default_cards() {
    let mut cps = profiles::default_cps();
    let mut vit = profiles::default_vitale();
    assert_eq!(
        cards::identify(&mut InProcess(&mut cps)).unwrap(),
        CardKind::Cps
    );
    assert_eq!(
        cards::identify(&mut InProcess(&mut vit)).unwrap(),
        CardKind::Vitale
    );
    let data = cards::read_cps(&mut InProcess(&mut cps)).unwrap();
    let (holder, situations) = profiles::default_cps_holder();
    assert_eq!(data.holder, holder);
    assert_eq!(data.situations, situations);
    assert!(fse_formats::ids::rpps_is_valid(
        &data.holder.national_id[1..]
    ));
    assert!(data.certificate.is_some(), "the CPS holds its certificate");
    let mut v = cards::read_vitale(&mut InProcess(&mut vit)).unwrap();
    assert!(v.certificate.take().is_some(), "the Vitale card too");
    assert_eq!(v, profiles::default_vitale_data());
    assert!(v
        .beneficiaries
        .iter()
        .all(|b| fse_formats::ids::nir_is_valid(&b.nir)));
}

#[test]
fn pin_counter_blocks_after_three_wrong_pins_and_signing_needs_the_pin() {
    let mut cps = profiles::default_cps();
    let stats = cps.stats();
    let mut ch = InProcess(&mut cps);
    cards::select_aid(&mut ch, cards::AID_CPS).unwrap();
    assert_eq!(
        cards::cps_sign(&mut ch, b"lot"),
        Err(CardError::PinRequired)
    );
    let wrong = Pin::new("9999").unwrap();
    assert_eq!(
        cards::verify_pin(&mut ch, &wrong),
        Err(CardError::WrongPin { tries_left: 2 })
    );
    assert_eq!(cards::pin_tries_left(&mut ch).unwrap(), Some(2));
    let right = Pin::new(profiles::DEFAULT_PIN).unwrap();
    cards::verify_pin(&mut ch, &right).unwrap();
    assert_eq!(cards::pin_tries_left(&mut ch).unwrap(), None, "verified");
    let sig = cards::cps_sign(&mut ch, b"lot header").unwrap();
    let key = cards::read_cps(&mut ch).unwrap().public_key;
    assert!(cards::verify_signature(&key, b"lot header", &sig));
    assert_eq!(CardStats::get(&stats.signatures), 1);
    for left in [2, 1] {
        assert_eq!(
            cards::verify_pin(&mut ch, &wrong),
            Err(CardError::WrongPin { tries_left: left })
        );
    }
    assert_eq!(
        cards::verify_pin(&mut ch, &wrong),
        Err(CardError::PinBlocked)
    );
    assert_eq!(
        cards::verify_pin(&mut ch, &right),
        Err(CardError::PinBlocked),
        "the right PIN no longer opens a blocked card"
    );
    assert_eq!(
        cards::cps_sign(&mut ch, b"lot"),
        Err(CardError::PinRequired)
    );
}

/// Raw APDU in, status word out (the last two bytes) and the data length before it.
fn raw(card: &mut dyn VirtualCard, apdu: &[u8]) -> (usize, u16) {
    let r = card.process(apdu);
    let n = r.len() - 2;
    (n, u16::from_be_bytes([r[n], r[n + 1]]))
}

#[test]
fn a_signature_asked_with_another_le_than_64_answers_6c40() {
    let mut cps = profiles::default_cps();
    let stats = cps.stats();
    let mut select = vec![0x00, 0xA4, 0x04, 0x0C, cards::AID_CPS.len() as u8];
    select.extend_from_slice(cards::AID_CPS);
    assert_eq!(raw(&mut cps, &select), (0, 0x9000));
    let mut verify = vec![0x00, 0x20, 0x00, cards::PIN_REF, 0x08];
    verify.extend_from_slice(profiles::DEFAULT_PIN.as_bytes());
    verify.resize(5 + 8, 0xFF);
    assert_eq!(raw(&mut cps, &verify), (0, 0x9000));
    // PSO with a 3-byte message "lot" and Le: 00 2A 9E 9A 03 'l' 'o' 't' Le.
    let pso = |le: u8| vec![0x00, 0x2A, 0x9E, 0x9A, 0x03, b'l', b'o', b't', le];
    // Le 0x10 (16) and 0x41 (65) are wrong: 6C40, 0x40 = 64 the signature's length.
    assert_eq!(raw(&mut cps, &pso(0x10)), (0, 0x6C40));
    assert_eq!(raw(&mut cps, &pso(0x41)), (0, 0x6C40));
    assert_eq!(CardStats::get(&stats.signatures), 0, "no signature made");
    // Le 0x40 (64) and 0x00 (up to 256) get the 64 bytes.
    assert_eq!(raw(&mut cps, &pso(0x40)), (64, 0x9000));
    assert_eq!(raw(&mut cps, &pso(0x00)), (64, 0x9000));

    let mut vit = profiles::default_vitale();
    let mut select = vec![0x00, 0xA4, 0x04, 0x0C, cards::AID_VITALE.len() as u8];
    select.extend_from_slice(cards::AID_VITALE);
    assert_eq!(raw(&mut vit, &select), (0, 0x9000));
    // INTERNAL AUTHENTICATE: 00 88 00 00 20 + 32-byte challenge + Le.
    let auth = |le: u8| {
        let mut a = vec![0x00, 0x88, 0x00, 0x00, 0x20];
        a.extend_from_slice(&[7; 32]);
        a.push(le);
        a
    };
    assert_eq!(raw(&mut vit, &auth(0x20)), (0, 0x6C40));
    assert_eq!(raw(&mut vit, &auth(0x40)), (64, 0x9000));
    assert_eq!(raw(&mut vit, &auth(0x00)), (64, 0x9000));
}

#[test]
fn read_binary_without_le_reads_up_to_256_bytes() {
    let mut cps = profiles::default_cps();
    let mut select = vec![0x00, 0xA4, 0x04, 0x0C, cards::AID_CPS.len() as u8];
    select.extend_from_slice(cards::AID_CPS);
    assert_eq!(raw(&mut cps, &select), (0, 0x9000));
    assert_eq!(
        raw(&mut cps, &[0x00, 0xA4, 0x02, 0x0C, 0x02, 0xD1, 0x00]),
        (0, 0x9000)
    );
    // Case 1 (no Le) reads as Le = 00: the whole holder file (under 256 bytes), 9000.
    let whole = cps.process(&[0x00, 0xB0, 0x00, 0x00, 0x00]);
    assert_eq!(cps.process(&[0x00, 0xB0, 0x00, 0x00]), whole);
    assert!(whole.len() > 2 && whole.ends_with(&[0x90, 0x00]));
}

#[test]
fn change_and_unblock_with_the_puk() {
    let mut cps = profiles::default_cps();
    let mut ch = InProcess(&mut cps);
    let (old, new) = (
        Pin::new(profiles::DEFAULT_PIN).unwrap(),
        Pin::new("4321").unwrap(),
    );
    assert_eq!(
        cards::change_pin(&mut ch, &new, &old),
        Err(CardError::WrongPin { tries_left: 2 })
    );
    cards::change_pin(&mut ch, &old, &new).unwrap();
    assert_eq!(
        cards::verify_pin(&mut ch, &old),
        Err(CardError::WrongPin { tries_left: 2 })
    );
    cards::verify_pin(&mut ch, &old).unwrap_err();
    assert_eq!(cards::verify_pin(&mut ch, &old), Err(CardError::PinBlocked));
    let wrong_puk = fse_formats::cards::Puk::new("00000000").unwrap();
    assert_eq!(
        cards::unblock_pin(&mut ch, &wrong_puk, &old),
        Err(CardError::WrongPin { tries_left: 9 })
    );
    let puk = fse_formats::cards::Puk::new(profiles::DEFAULT_PUK).unwrap();
    cards::unblock_pin(&mut ch, &puk, &old).unwrap();
    assert_eq!(cards::pin_tries_left(&mut ch).unwrap(), Some(3));
    cards::verify_pin(&mut ch, &old).unwrap();
}

#[test]
fn reset_clears_the_verified_pin() {
    let mut cps = profiles::default_cps();
    cards::verify_pin(
        &mut InProcess(&mut cps),
        &Pin::new(profiles::DEFAULT_PIN).unwrap(),
    )
    .unwrap();
    cps.reset();
    let mut ch = InProcess(&mut cps);
    cards::select_aid(&mut ch, cards::AID_CPS).unwrap();
    assert_eq!(cards::cps_sign(&mut ch, b"x"), Err(CardError::PinRequired));
}

#[test]
fn vitale_proves_presence() {
    let mut vit = profiles::default_vitale();
    let challenge = [42u8; 32];
    let sig = cards::vitale_authenticate(&mut InProcess(&mut vit), &challenge).unwrap();
    let key = profiles::default_vitale_data().public_key;
    assert!(cards::verify_signature(&key, &challenge, &sig));
    assert!(!cards::verify_signature(&key, &[0u8; 32], &sig));
    assert_eq!(CardStats::get(&vit.stats().authentications), 1);
}

#[test]
fn standard_status_words() {
    let mut cps = profiles::default_cps();
    assert_eq!(
        status(&mut cps, Command::new(0x80, 0xA4, 4, 0)),
        apdu::SW_CLA_NOT_SUPPORTED
    );
    assert_eq!(
        status(&mut cps, Command::new(0, 0x99, 0, 0)),
        apdu::SW_INS_NOT_SUPPORTED
    );
    assert_eq!(
        status(&mut cps, Command::new(0, 0xA4, 9, 9)),
        apdu::SW_WRONG_P1P2
    );
    assert_eq!(
        status(&mut cps, Command::new(0, 0xB0, 0, 0).with_le(256)),
        apdu::SW_NO_CURRENT_EF
    );
    assert_eq!(
        status(
            &mut cps,
            Command::new(0, 0xA4, 4, 0x0C).with_data(cards::AID_VITALE)
        ),
        apdu::SW_FILE_NOT_FOUND
    );
    assert_eq!(
        status(
            &mut cps,
            Command::new(0, 0xA4, 4, 0x0C).with_data(cards::AID_CPS)
        ),
        apdu::SW_OK
    );
    assert_eq!(
        status(
            &mut cps,
            Command::new(0, 0xA4, 2, 0x0C).with_data([0x12, 0x34])
        ),
        apdu::SW_FILE_NOT_FOUND
    );
    assert_eq!(
        status(&mut cps, Command::new(0, 0xA4, 2, 0x0C).with_data([0xD1])),
        apdu::SW_WRONG_LENGTH
    );
    assert_eq!(
        status(
            &mut cps,
            Command::new(0, 0xA4, 2, 0x0C).with_data([0xD1, 0x00])
        ),
        apdu::SW_OK
    );
    assert_eq!(
        status(&mut cps, Command::new(0, 0xB0, 0x7F, 0).with_le(16)),
        apdu::SW_WRONG_PARAMETERS
    );
    assert_eq!(
        status(
            &mut cps,
            Command::new(0, 0x20, 0, 0x81).with_data([1, 2, 3])
        ),
        apdu::SW_WRONG_LENGTH
    );
    assert_eq!(cps.process(&[0x00]), vec![0x67, 0x00], "malformed APDU");
}

#[test]
fn atrs_are_distinct_and_carry_a_valid_tck() {
    assert_ne!(ATR_CPS, ATR_VITALE);
    for atr in [ATR_CPS, ATR_VITALE] {
        // T=1 is offered, so TCK is present: T0..TCK XOR to zero (ISO 7816-3, 8.2.5).
        assert_eq!(atr[1..].iter().fold(0u8, |x, b| x ^ b), 0, "{atr:02X?}");
    }
}

#[test]
fn files_over_256_bytes_read_in_pieces() {
    let (holder, mut situations) = profiles::default_cps_holder();
    situations[0].place = "x".repeat(600);
    let mut cps = VirtualCps::new(
        &holder,
        &situations,
        Pin::new("1234").unwrap(),
        profiles::test_key("big"),
    );
    let data = cards::read_cps(&mut InProcess(&mut cps)).unwrap();
    assert_eq!(data.situations[0].place.len(), 600);
}
