use super::*;
use fse_formats::ack::SignedReturn;
use fse_formats::rights::{check_answer, AnswerRefusal};

fn request(nir13: &str, birth: &str) -> RightsRequest {
    RightsRequest {
        request_id: "R-7".into(),
        nir: crate::profiles::nir(nir13),
        birth_date: birth.into(),
        rank: 1,
        practitioner_id: String::new(),
        asked_at: "20261207100000Z".into(),
    }
}

fn trust() -> fse_formats::pki::TrustStore {
    let dir = tempfile::tempdir().unwrap();
    crate::pki::TestPki::shared()
        .unwrap()
        .write(dir.path(), time::OffsetDateTime::now_utc())
        .unwrap();
    super::super::load_trust(dir.path()).unwrap()
}

#[test]
fn online_rights_are_fresher_than_the_card_and_checked_by_fsed_formats() {
    let req = request("1600113055123", "19600101");
    let now = chrono::Utc::now();
    let knobs = RightsKnobs::default();
    let answer = answer_request(&req, &knobs, now);
    assert_eq!(answer.status, RightsStatus::Found);
    // The card says rights until 2023-12-31; the insurer knows them renewed until 2030.
    assert_eq!(answer.rights_until, "20301231");
    assert_eq!(answer.organism, "011310001");
    let der = sign_answer(answer.clone(), &knobs).unwrap();
    let signed = SignedReturn::from_der(&der).unwrap();
    let trust = trust();
    let t = now.timestamp();
    assert_eq!(check_answer(&signed, &req, &trust, t, 60).unwrap(), answer);
    // Another request's id is not echoed.
    let other = RightsRequest {
        request_id: "R-8".into(),
        ..req.clone()
    };
    assert_eq!(
        check_answer(&signed, &other, &trust, t, 60),
        Err(AnswerRefusal::Mismatch("request_id"))
    );
    // Stale: 7 days old against 60 s allowed.
    let stale = RightsKnobs {
        stale: true,
        ..RightsKnobs::default()
    };
    let signed =
        SignedReturn::from_der(&sign_answer(answer_request(&req, &stale, now), &stale).unwrap())
            .unwrap();
    assert!(matches!(
        check_answer(&signed, &req, &trust, t, 60),
        Err(AnswerRefusal::Stale(_))
    ));
    // A wrong signer, a forged signature.
    let wrong = RightsKnobs {
        wrong_signer: true,
        ..RightsKnobs::default()
    };
    let signed = SignedReturn::from_der(&sign_answer(answer.clone(), &wrong).unwrap()).unwrap();
    assert!(matches!(
        check_answer(&signed, &req, &trust, t, 60),
        Err(AnswerRefusal::WrongInsurer { .. })
    ));
    let forged = RightsKnobs {
        bad_signature: true,
        ..RightsKnobs::default()
    };
    let signed = SignedReturn::from_der(&sign_answer(answer, &forged).unwrap()).unwrap();
    assert!(matches!(
        check_answer(&signed, &req, &trust, t, 60),
        Err(AnswerRefusal::Auth(_))
    ));
}

#[test]
fn unknown_beneficiaries_and_the_spool() {
    let now = chrono::Utc::now();
    let stranger = request("1999999999999", "19990101");
    assert_eq!(
        answer_request(&stranger, &RightsKnobs::default(), now).status,
        RightsStatus::Unknown
    );
    let knobs = RightsKnobs {
        unknown: vec!["1850578006084".into()],
        ..RightsKnobs::default()
    };
    let jean = request("1850578006084", "19850512");
    let a = answer_request(&jean, &knobs, now);
    assert_eq!(a.status, RightsStatus::Unknown);
    assert_eq!(a.organism, "017510001");
    // Spool: the request file is taken, the answer written under the request's id.
    let dir = tempfile::tempdir().unwrap();
    let (requests, answers) = spool_dirs(dir.path());
    std::fs::create_dir_all(&requests).unwrap();
    std::fs::write(requests.join("R-7.der"), jean.to_der().unwrap()).unwrap();
    assert_eq!(
        rights_spool_pass(dir.path(), &RightsKnobs::default()).unwrap(),
        1
    );
    assert!(!requests.join("R-7.der").exists());
    let der = std::fs::read(answers.join("R-7.der")).unwrap();
    let signed = SignedReturn::from_der(&der).unwrap();
    assert_eq!(signed.content.lot_id(), "R-7");
    // Outage: taken, nothing answered.
    std::fs::write(requests.join("R-9.der"), jean.to_der().unwrap()).unwrap();
    let out = RightsKnobs {
        outage: true,
        ..RightsKnobs::default()
    };
    assert_eq!(rights_spool_pass(dir.path(), &out).unwrap(), 1);
    assert!(!answers.join("R-9.der").exists());
}
