use super::*;
use crate::cards::Beneficiary;

fn request() -> RightsRequest {
    RightsRequest {
        request_id: "R-1".into(),
        nir: "160011305512345".into(),
        birth_date: "19600101".into(),
        rank: 1,
        practitioner_id: "10001234567".into(),
        asked_at: "20261207101500Z".into(),
    }
}

fn answer() -> RightsAnswer {
    RightsAnswer {
        request_id: "R-1".into(),
        status: RightsStatus::Found,
        nir: "160011305512345".into(),
        birth_date: "19600101".into(),
        rank: 1,
        organism: "011310001".into(),
        surname: "NOEL".into(),
        given_name: "Albert".into(),
        rights_from: "20260101".into(),
        rights_until: "20301231".into(),
        coverages: vec![Coverage {
            kind: CoverageKind::Ald,
            from: "20260101".into(),
            until: "20281231".into(),
        }],
        amc: Some(Amc {
            number: "88888888".into(),
            name: "MUTUELLE".into(),
            direct: true,
            tiers_payant: false,
            from: "20260101".into(),
            until: "20261231".into(),
        }),
        answered_at: "20261207101501Z".into(),
    }
}

#[test]
fn requests_and_answers_round_trip() {
    let r = request();
    assert_eq!(RightsRequest::from_der(&r.to_der().unwrap()).unwrap(), r);
    let a = answer();
    assert_eq!(RightsAnswer::from_der(&a.to_der().unwrap()).unwrap(), a);
    let unknown = RightsAnswer {
        status: RightsStatus::Unknown,
        surname: String::new(),
        given_name: String::new(),
        rights_from: String::new(),
        rights_until: String::new(),
        coverages: vec![],
        amc: None,
        ..answer()
    };
    assert_eq!(
        RightsAnswer::from_der(&unknown.to_der().unwrap()).unwrap(),
        unknown
    );
    // A request is not an answer and an answer not a request.
    assert!(RightsAnswer::from_der(&r.to_der().unwrap()).is_err());
    assert!(RightsRequest::from_der(&a.to_der().unwrap()).is_err());
}

#[test]
fn non_canonical_and_inconsistent_answers_are_refused() {
    // Long-form length of the outer SEQUENCE (30 81 xx) where the short form (30 xx) fits.
    let req = request().to_der().unwrap();
    assert!(req[1] < 0x80, "sample short enough for the short form");
    let mut long = vec![0x30, 0x81];
    long.extend_from_slice(&req[1..]);
    assert!(RightsRequest::from_der(&long).is_err());
    let der = answer().to_der().unwrap();
    // A trailing byte.
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(RightsAnswer::from_der(&trailing).is_err());
    // Two AMCs.
    let mut two = answer().to_der().unwrap();
    let amc = AmcDer {
        number: "1".into(),
        name: "x".into(),
        direct: DerBool(false),
        tiers_payant: DerBool(false),
        from: String::new(),
        until: String::new(),
    };
    let mut a = AnswerDer::from_der(&two).unwrap().1;
    a.amc.push(amc);
    two = a.to_der_vec().unwrap();
    let err = RightsAnswer::from_der(&two).unwrap_err();
    assert!(err.to_string().contains("amc"), "{err}");
    // An organism of 8 digits.
    let short = RightsAnswer {
        organism: "01131000".into(),
        ..answer()
    };
    let err = RightsAnswer::from_der(&short.to_der().unwrap()).unwrap_err();
    assert!(err.to_string().contains("organism"), "{err}");
    // An unknown answer with rights.
    let odd = RightsAnswer {
        status: RightsStatus::Unknown,
        ..answer()
    };
    assert!(RightsAnswer::from_der(&odd.to_der().unwrap()).is_err());
    // Rank 0.
    let mut r = RequestDer::from_der(&request().to_der().unwrap())
        .unwrap()
        .1;
    r.rank = 0;
    assert!(RightsRequest::from_der(&r.to_der_vec().unwrap()).is_err());
}

#[test]
fn signed_rights_answers_keep_arl_and_payment_kinds() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let signed =
        SignedReturn::sign(ReturnContent::Rights(Box::new(answer())), &key, vec![1]).unwrap();
    let der = signed.to_der().unwrap();
    let back = SignedReturn::from_der(&der).unwrap();
    assert_eq!(back, signed);
    assert_eq!(back.content.insurer(), "011310001");
    assert_eq!(back.content.lot_id(), "R-1");
    // Kind 2 on the wire: SEQUENCE (30 82 LL LL) { INTEGER 1, INTEGER 2, … }.
    assert_eq!(&der[4..10], &[0x02, 0x01, 0x01, 0x02, 0x01, 0x02]);
    // Not trusted without the insurer's chain, and an ARL is not a rights answer.
    let err = check_answer(&back, &request(), &TrustStore::new(), 1_796_638_501, 60).unwrap_err();
    assert!(matches!(err, AnswerRefusal::Auth(_)), "{err}");
    let arl = crate::ack::Arl {
        lot_id: "L".into(),
        merkle_root: hex::encode([0u8; 32]),
        status: crate::ack::ArlStatus::Positive,
        insurer: "011310001".into(),
        received_at: "20261207101501Z".into(),
        rejections: vec![],
    };
    let arl = SignedReturn::sign(ReturnContent::Arl(arl), &key, vec![1]).unwrap();
    assert_eq!(
        check_answer(&arl, &request(), &TrustStore::new(), 0, 60),
        Err(AnswerRefusal::NotRights)
    );
}

#[test]
fn the_decision_to_look_up() {
    let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    // Closed: ended the day before today.
    assert_eq!(
        lookup_needed("20260101", "20261206", today, 90),
        Some(LookupReason::Closed {
            until: "20261206".into()
        })
    );
    // Fresh: from 2026-09-08 to 2026-12-07 is 22 + 31 + 30 + 7 = 90 days, not more than 90.
    assert_eq!(lookup_needed("20260908", "20301231", today, 90), None);
    // Old: from 2026-09-07 it is 91 days.
    assert_eq!(
        lookup_needed("20260907", "20301231", today, 90),
        Some(LookupReason::Old { days: 91 })
    );
    // Ends today: still open.
    assert_eq!(lookup_needed("20261201", "20261207", today, 90), None);
    assert_eq!(
        lookup_needed("2026-01-01", "20301231", today, 90),
        Some(LookupReason::Unreadable)
    );
}

#[test]
fn a_found_answer_overlays_the_card() {
    let mut card = VitaleData {
        serial: "VIT".into(),
        organism: Organism {
            regime: "01".into(),
            caisse: "751".into(),
            centre: "0001".into(),
        },
        beneficiaries: vec![Beneficiary {
            surname: "NOEL".into(),
            given_name: "Albert".into(),
            birth_date: "19600101".into(),
            nir: "160011305512345".into(),
            rank: 1,
            rights_from: "20200101".into(),
            rights_until: "20231231".into(),
            coverages: vec![],
        }],
        public_key: [0; 32],
        amc: None,
        certificate: None,
    };
    let a = answer();
    a.overlay(&mut card, 0);
    assert_eq!(card.organism.code(), "011310001");
    assert_eq!(card.organism.caisse, "131");
    assert_eq!(card.beneficiaries[0].rights_until, "20301231");
    assert_eq!(card.beneficiaries[0].coverages.len(), 1);
    assert_eq!(
        card.amc.as_ref().map(|m| m.number.as_str()),
        Some("88888888")
    );
    assert_eq!(card.beneficiaries[0].surname, "NOEL");
    // An unknown answer changes nothing.
    let before = card.clone();
    RightsAnswer {
        status: RightsStatus::Unknown,
        ..answer()
    }
    .overlay(&mut card, 0);
    assert_eq!(card, before);
    assert_eq!(stamp_seconds("19700101000100Z"), Some(60));
}
