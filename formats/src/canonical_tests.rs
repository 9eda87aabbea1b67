//! Property tests of every DER decoder (sheet, DRE, lot header, signed lot, ARL) and of the
//! sheet model: arbitrary valid sheets round-trip; any non-canonical re-encoding of a valid
//! value — a long length form, an indefinite length, a padded INTEGER, a BOOLEAN other than
//! `FF` — is refused; a value of the wrong type at any place is an error, never a panic; and
//! the priced shares always add up to the total.

use proptest::prelude::*;

use crate::ack::{Arl, ArlStatus, Rejection};
use crate::dre::Dre;
use crate::fse::{
    Act, AtMp, CarePath, CareSheet, Cover, CoverKind, Mode, Prescriber, ReplacedPractitioner,
    TiersPayant,
};
use crate::lot::{LotHeader, SignedLot};
use crate::rules::{self, ActLine, Context, PfHistory, Tables};

/// A DER value as a tree, to re-encode it in other (non-canonical) ways.
#[derive(Debug, Clone)]
enum Node {
    Prim(u8, Vec<u8>),
    Cons(u8, Vec<Node>),
}

fn parse(bytes: &[u8]) -> (Node, &[u8]) {
    let tag = bytes[0];
    let (len, head) = if bytes[1] < 0x80 {
        (usize::from(bytes[1]), 2)
    } else {
        let n = usize::from(bytes[1] & 0x7F);
        let len = bytes[2..2 + n]
            .iter()
            .fold(0usize, |a, b| (a << 8) | usize::from(*b));
        (len, 2 + n)
    };
    let content = &bytes[head..head + len];
    let rest = &bytes[head + len..];
    if tag & 0x20 != 0 {
        let mut children = Vec::new();
        let mut inner = content;
        while !inner.is_empty() {
            let (child, after) = parse(inner);
            children.push(child);
            inner = after;
        }
        (Node::Cons(tag, children), rest)
    } else {
        (Node::Prim(tag, content.to_vec()), rest)
    }
}

fn count(node: &Node) -> usize {
    match node {
        Node::Prim(..) => 1,
        Node::Cons(_, c) => 1 + c.iter().map(count).sum::<usize>(),
    }
}

/// Ways to re-encode one node.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// Its length one octet longer than needed.
    LongLength,
    /// Indefinite length (constructed only).
    Indefinite,
    /// An INTEGER with a superfluous leading zero.
    PadInteger,
    /// A true BOOLEAN as `01`.
    LaxBoolean,
    /// Replaced by an empty UTF8String (a wrong type, not a re-encoding).
    EmptyString,
    /// Replaced by an empty SEQUENCE (a wrong type).
    EmptySequence,
}

fn length(len: usize, long: bool) -> Vec<u8> {
    let octets: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    match (len < 0x80, long) {
        (true, false) => vec![len as u8],
        (true, true) => vec![0x81, len as u8],
        (false, false) => [vec![0x80 | octets.len() as u8], octets].concat(),
        (false, true) => [vec![0x81 + octets.len() as u8, 0], octets].concat(),
    }
}

/// Encodes `node`, applying `change` to the node numbered `target` (pre-order); `applied`
/// says whether the change made sense there.
fn encode(
    node: &Node,
    target: usize,
    change: Change,
    next: &mut usize,
    applied: &mut bool,
) -> Vec<u8> {
    let me = *next;
    *next += 1;
    let here = me == target;
    if here {
        match change {
            Change::EmptyString => {
                *applied = true;
                let mut skip = 0;
                skip_count(node, &mut skip);
                *next = me + skip;
                return vec![0x0C, 0x00];
            }
            Change::EmptySequence => {
                *applied = true;
                let mut skip = 0;
                skip_count(node, &mut skip);
                *next = me + skip;
                return vec![0x30, 0x00];
            }
            _ => {}
        }
    }
    match node {
        Node::Prim(tag, content) => {
            let mut content = content.clone();
            let mut long = false;
            if here {
                match change {
                    Change::LongLength => {
                        long = true;
                        *applied = true;
                    }
                    Change::PadInteger if *tag == 0x02 => {
                        content.insert(0, 0);
                        *applied = true;
                    }
                    Change::LaxBoolean if *tag == 0x01 && content == [0xFF] => {
                        content = vec![0x01];
                        *applied = true;
                    }
                    _ => {}
                }
            }
            [vec![*tag], length(content.len(), long), content].concat()
        }
        Node::Cons(tag, children) => {
            let content: Vec<u8> = children
                .iter()
                .flat_map(|c| encode(c, target, change, next, applied))
                .collect();
            if here && matches!(change, Change::Indefinite) {
                *applied = true;
                return [vec![*tag, 0x80], content, vec![0, 0]].concat();
            }
            let long = here && matches!(change, Change::LongLength);
            *applied |= long;
            [vec![*tag], length(content.len(), long), content].concat()
        }
    }
}

fn skip_count(node: &Node, n: &mut usize) {
    *n += count(node);
}

type Decoder = fn(&[u8]) -> bool;

/// Each decoder with a valid value of its type: (name, DER, decodes?).
fn samples() -> Vec<(&'static str, Vec<u8>, Decoder)> {
    let sheet = rich_sheet();
    let dre = Dre::from_sheet(&sheet).unwrap().unwrap();
    let lot = crate::lot::tests::lot(2);
    let arl = Arl {
        lot_id: "L-1".into(),
        merkle_root: hex::encode([7u8; 32]),
        status: ArlStatus::Negative,
        insurer: "011751234".into(),
        received_at: "20261122120000Z".into(),
        rejections: vec![Rejection {
            sheet_number: Some(3),
            code: "SHARES".into(),
            reason: "AMO share".into(),
        }],
    };
    vec![
        ("sheet", sheet.to_der().unwrap(), |b| {
            CareSheet::from_der(b).is_ok()
        }),
        ("dre", dre.to_der().unwrap(), |b| Dre::from_der(b).is_ok()),
        ("lot header", lot.header.to_der().unwrap(), |b| {
            LotHeader::from_der(b).is_ok()
        }),
        ("lot", lot.to_der().unwrap(), |b| {
            SignedLot::from_der(b).is_ok()
        }),
        ("arl", arl.to_der().unwrap(), |b| Arl::from_der(b).is_ok()),
    ]
}

/// A sheet with every optional part present: remplaçant, prescriber, AT/MP, AMC, proof.
fn rich_sheet() -> CareSheet {
    let mut s = CareSheet::sample(7);
    s.replaced = Some(ReplacedPractitioner {
        national_id: "810000000009".into(),
        surname: "MARTIN".into(),
        given_name: "Claire".into(),
        billing_number: "75123456".into(),
    });
    s.acts[0].prescriber = Some(Prescriber {
        national_id: "810000000009".into(),
        date: "20261101".into(),
    });
    s.acts[0].modifiers = vec!["DE".into()];
    s.cover = Cover {
        kind: CoverKind::AtMp,
        ald: true,
        css: false,
        at_mp: Some(AtMp {
            date: "20261102".into(),
            number: "AT1".into(),
        }),
    };
    s.tiers_payant = TiersPayant {
        amo: true,
        amc: true,
        amc_number: Some("75500017".into()),
    };
    s.amounts.amc_cents = 900;
    s.amounts.patient_cents = 200;
    s
}

#[test]
fn every_non_canonical_re_encoding_is_refused_and_wrong_types_never_panic() {
    for (name, der, decodes) in samples() {
        assert!(decodes(&der), "{name}: the sample decodes");
        let (tree, rest) = parse(&der);
        assert!(rest.is_empty());
        let nodes = count(&tree);
        let mut refused = 0;
        for target in 0..nodes {
            for change in [
                Change::LongLength,
                Change::Indefinite,
                Change::PadInteger,
                Change::LaxBoolean,
                Change::EmptyString,
                Change::EmptySequence,
            ] {
                let mut applied = false;
                let bytes = encode(&tree, target, change, &mut 0, &mut applied);
                if !applied {
                    continue;
                }
                let ok = decodes(&bytes);
                if !matches!(change, Change::EmptyString | Change::EmptySequence) {
                    assert!(!ok, "{name}: node {target} {change:?} accepted");
                    refused += 1;
                }
            }
        }
        assert!(
            refused > nodes,
            "{name}: {refused} re-encodings refused over {nodes} nodes"
        );
    }
}

fn text() -> impl Strategy<Value = String> {
    "[ -~éèçÀ]{0,12}"
}

fn date() -> impl Strategy<Value = String> {
    (2000u32..2030, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}{m:02}{d:02}"))
}

fn act() -> impl Strategy<Value = Act> {
    (
        ("[A-Z0-9]{1,8}", 1u32..100_000, 1u32..100, date()),
        proptest::collection::vec("[A-Z]{1,3}", 0..3),
        proptest::option::of((text(), date())),
        (
            any::<u32>(),
            any::<u32>(),
            0u8..=100,
            any::<u32>(),
            any::<u16>(),
        ),
    )
        .prop_map(
            |((code, coefficient, quantity, date), modifiers, prescriber, money)| Act {
                code,
                coefficient,
                quantity,
                date,
                modifiers,
                prescriber: prescriber.map(|(national_id, date)| Prescriber { national_id, date }),
                base_cents: u64::from(money.0),
                excess_cents: u64::from(money.1),
                rate: money.2,
                amo_cents: u64::from(money.3),
                pf_cents: u64::from(money.4),
            },
        )
}

prop_compose! {
    fn sheet()(
        number in 1u64..u64::MAX,
        names in (text(), text(), text()),
        acts in proptest::collection::vec(act(), 1..5),
        path in 0usize..5,
        cover in (0usize..3, any::<bool>(), any::<bool>(), proptest::option::of((date(), text()))),
        tp in (any::<bool>(), any::<bool>(), proptest::option::of("[0-9]{8}")),
        amounts in proptest::collection::vec(any::<u64>(), 8),
        degraded in proptest::option::of(text()),
        replaced in proptest::option::of((text(), text())),
    ) -> CareSheet {
        let mut s = CareSheet::sample(number);
        s.practitioner.surname = names.0;
        s.beneficiary.given_name = names.1;
        s.tables_version = names.2;
        s.acts = acts;
        s.care_path = [CarePath::Treating, CarePath::DirectAccess, CarePath::Emergency, CarePath::OutOfPath, CarePath::NotApplicable][path];
        s.cover = Cover {
            kind: [CoverKind::Maladie, CoverKind::Maternite, CoverKind::AtMp][cover.0],
            ald: cover.1,
            css: cover.2,
            at_mp: cover.3.map(|(date, number)| AtMp { date, number }),
        };
        s.tiers_payant = TiersPayant { amo: tp.0, amc: tp.1, amc_number: tp.2 };
        let a = &mut s.amounts;
        (a.total_cents, a.base_cents, a.excess_cents, a.amo_cents) = (amounts[0], amounts[1], amounts[2], amounts[3]);
        (a.pf_cents, a.amc_cents, a.patient_cents, a.due_cents) = (amounts[4], amounts[5], amounts[6], amounts[7]);
        s.mode = if degraded.is_some() { Mode::Degraded } else { Mode::Secured };
        s.degraded_reason = degraded;
        s.replaced = replaced.map(|(surname, given_name)| ReplacedPractitioner {
            national_id: "810000000009".into(), surname, given_name, billing_number: "75123456".into(),
        });
        s
    }
}

proptest! {
    #[test]
    fn arbitrary_valid_sheets_round_trip(s in sheet()) {
        let der = s.to_der().unwrap();
        prop_assert_eq!(CareSheet::from_der(&der).unwrap(), s.clone());
        if let Some(dre) = Dre::from_sheet(&s).unwrap() {
            prop_assert_eq!(Dre::from_der(&dre.to_der().unwrap()).unwrap(), dre);
        }
    }

    #[test]
    fn the_shares_always_add_up_to_the_total(
        acts in proptest::collection::vec(
            (0usize..6, 1u32..5000, 1u32..10, 0u32..20, 0u64..50_000, proptest::collection::vec(0usize..4, 0..2)),
            1..8),
        birth_year in 1930i32..2026,
        cover in 0usize..3,
        flags in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        path in 0usize..4,
        history in (0u32..6, 0u64..6000),
        tp in (any::<bool>(), any::<bool>()),
    ) {
        let tables = Tables::builtin();
        let codes = ["G", "CS", "DEQP003", "APC", "GS", "C"];
        let modifiers = ["DE", "MEG", "F", "DE"];
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 16).unwrap();
        let lines: Vec<ActLine> = acts.iter().map(|(c, coef, qty, back, excess, m)| ActLine {
            code: codes[*c].into(),
            coefficient: *coef,
            quantity: *qty,
            date: day - chrono::Duration::days(i64::from(*back)),
            excess_cents: *excess,
            modifiers: m.iter().map(|i| modifiers[*i].to_string()).collect::<std::collections::BTreeSet<_>>().into_iter().collect(),
        }).collect();
        let ctx = Context {
            birth_date: chrono::NaiveDate::from_ymd_opt(birth_year, 6, 1).unwrap(),
            cover: [CoverKind::Maladie, CoverKind::Maternite, CoverKind::AtMp][cover],
            ald: flags.0,
            css: flags.1,
            care_path: [CarePath::Treating, CarePath::DirectAccess, CarePath::Emergency, CarePath::OutOfPath][path],
            amc: flags.2,
        };
        let hist = |_| PfHistory { same_day_with_professional: history.0, same_year_cents: history.1 };
        let priced = rules::price(&lines, &ctx, "10", tables, &hist).unwrap();
        let a = priced.amounts(&TiersPayant { amo: tp.0, amc: tp.1 && flags.3, amc_number: None });
        prop_assert_eq!(a.total_cents, a.base_cents + a.excess_cents);
        prop_assert_eq!(a.amo_cents + a.amc_cents + a.patient_cents, a.total_cents);
        prop_assert!(a.due_cents <= a.total_cents);
        prop_assert!(a.due_cents >= a.patient_cents);
        prop_assert_eq!(priced.acts.iter().map(|x| x.base_cents).sum::<u64>(), a.base_cents);
        prop_assert_eq!(priced.acts.iter().map(|x| x.pf_cents).sum::<u64>(), a.pf_cents);
        prop_assert!(a.pf_cents <= tables.participation.per_act_cents * lines.len() as u64);
        prop_assert!(priced.acts.iter().filter(|x| x.pf_cents > 0).count() <= tables.participation.per_day_per_professional as usize * lines.len());
        for x in &priced.acts {
            prop_assert!(x.amo_cents <= x.base_cents && x.pf_cents <= x.amo_cents);
        }
    }
}
