use super::*;

fn sample_sheet() -> CareSheet {
    CareSheet::sample(42)
}

#[test]
fn der_round_trip_degraded_and_secured() {
    use ed25519_dalek::{Signer, SigningKey};
    let mut s = sample_sheet();
    let der = s.to_der().unwrap();
    assert_eq!(der[0], 0x30);
    assert_eq!(CareSheet::from_der(&der).unwrap(), s);
    s.verify_presence().unwrap();

    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    s.mode = Mode::Secured;
    s.degraded_reason = None;
    let sig = key.sign(&s.presence_challenge().unwrap());
    s.presence = Some(Presence {
        vitale_serial: "V123".into(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(sig.to_bytes()),
    });
    let der = s.to_der().unwrap();
    let back = CareSheet::from_der(&der).unwrap();
    assert_eq!(back, s);
    back.verify_presence().unwrap();

    let mut tampered = back.clone();
    tampered.amounts.amo_cents += 1;
    assert!(tampered.verify_presence().is_err());
}

#[test]
fn truncated_der_is_an_error_not_a_panic() {
    let der = sample_sheet().to_der().unwrap();
    for cut in 0..der.len() {
        assert!(CareSheet::from_der(&der[..cut]).is_err());
    }
}
