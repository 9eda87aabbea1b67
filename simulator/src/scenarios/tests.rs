//! The scenario files' parsing: a bad file is refused naming its file, key and reason.

use super::model::{parse, Action, Fault};

const GOOD: &str = r#"
id = "gp-consultation"
title = "GP consultation"
tags = ["pricing"]

[[steps]]
do = "create"
params = { act = { code = "G", date = "today-1" } }
# G 30.00 €: AMO 70 % = 21.00 − 2.00 participation = 19.00 €.
expect = { amo_cents = 1900, total_cents = 3000 }

[[steps]]
do = "fault"
fault = "transport_down"
"#;

#[test]
fn a_good_scenario_is_read_with_its_defaults() {
    let s = parse("good.toml", GOOD).unwrap();
    assert_eq!(s.id, "gp-consultation");
    assert_eq!(s.cards.cps, "cps-medecin-generaliste");
    assert_eq!(s.cards.vitale, "vitale-famille");
    assert_eq!(s.cards.pin, "1234");
    assert_eq!(s.steps[0].action, Action::Create);
    assert_eq!(s.steps[0].expect.amo_cents, Some(1900));
    assert_eq!(s.steps[1].fault, Some(Fault::TransportDown));
    assert!(s.steps[1].needs_own() && !s.steps[0].needs_own());
}

fn refused(text: &str) -> super::ScenarioError {
    parse("bad.toml", text).unwrap_err()
}

#[test]
fn an_unknown_key_is_named_with_the_file_and_line() {
    let e = refused(&GOOD.replace("tags =", "tagz ="));
    assert_eq!(e.file, "bad.toml");
    assert_eq!(e.key, "tagz");
    assert!(e.reason.contains("unknown field"), "{e}");
    assert!(e.reason.contains("line 4"), "{e}");
    let e = refused(&GOOD.replace("amo_cents = 1900", "amo_cent = 1900"));
    assert_eq!(e.key, "steps[0].expect.amo_cent", "{e}");
    let e = refused(&GOOD.replace("fault = \"transport_down\"", "fault = \"meteor\""));
    assert_eq!(e.key, "steps[1].fault", "{e}");
    let e = refused(&format!("{GOOD}\n[cards]\ncpss = \"x\"\n"));
    assert_eq!(e.key, "cards.cpss", "{e}");
}

#[test]
fn a_wrong_type_a_missing_key_and_bad_toml_are_refused_not_panicked_on() {
    let e = refused(&GOOD.replace("amo_cents = 1900", "amo_cents = \"19.00\""));
    assert!(e.reason.contains("invalid type"), "{e}");
    let e = refused(&GOOD.replace("id = \"gp-consultation\"\n", ""));
    assert_eq!(e.key, "id", "{e}");
    assert!(e.reason.contains("missing field"), "{e}");
    let e = refused("id = [");
    assert_eq!(e.file, "bad.toml");
    assert!(!e.reason.is_empty());
    let e = refused(&GOOD.replace("do = \"fault\"", "do = \"explode\""));
    assert!(e.reason.contains("unknown variant"), "{e}");
    // Every prefix of a good file: an error or a scenario, never a panic.
    for (i, _) in GOOD.char_indices() {
        let _ = parse("cut.toml", &GOOD[..i]);
    }
}

#[test]
fn checks_after_parsing_name_the_step_and_key() {
    let e = refused(&GOOD.replace("fault = \"transport_down\"", ""));
    assert_eq!(e.key, "steps[1].fault", "{e}");
    assert!(e.reason.contains("required"), "{e}");
    let e = refused(&GOOD.replace("id = \"gp-consultation\"", "id = \"gp consultation\""));
    assert_eq!(e.key, "id");
    let text =
        format!("{GOOD}\n[[steps]]\ndo = \"insert\"\nslot = \"tray\"\nprofile = \"vitale-css\"\n");
    let e = refused(&text);
    assert_eq!(e.key, "steps[2].slot", "{e}");
    let e = refused("id = \"x\"\ntitle = \"t\"\nsteps = []\n");
    assert_eq!(e.key, "steps");
}

#[test]
fn the_catalogue_refuses_two_files_with_one_id_and_filters_by_tag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), GOOD).unwrap();
    let all = super::catalogue(dir.path(), &[]).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        super::catalogue(dir.path(), &["pricing".into()])
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        super::catalogue(dir.path(), &["faults".into()])
            .unwrap()
            .len(),
        0
    );
    std::fs::write(dir.path().join("b.toml"), GOOD).unwrap();
    let errors = super::catalogue(dir.path(), &[]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "id");
    assert!(errors[0].file.ends_with("b.toml"));
}

/// The catalogue shipped in `simulator/scenarios/`.
fn shipped() -> Vec<super::Scenario> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    super::catalogue(&dir, &[]).unwrap()
}

#[test]
fn the_shipped_catalogue_reads_and_holds_at_least_80_scenarios() {
    let all = shipped();
    assert!(all.len() >= 80, "{} scenarios", all.len());
}

#[test]
fn every_refusal_rule_is_expected_by_a_scenario() {
    let all = shipped();
    let expected: std::collections::BTreeSet<String> = all
        .iter()
        .flat_map(|s| s.steps.iter().filter_map(|st| st.expect.rule.clone()))
        .collect();
    let missing: Vec<&str> = fse_formats::build::ALL_RULES
        .iter()
        .copied()
        .filter(|r| !expected.contains(*r))
        .collect();
    assert!(missing.is_empty(), "rules no scenario expects: {missing:?}");
}

#[test]
fn every_card_profile_is_in_a_scenario() {
    let all = shipped();
    let used: std::collections::BTreeSet<String> = all
        .iter()
        .flat_map(|s| {
            let inserted = s.steps.iter().filter_map(|st| st.profile.clone());
            [s.cards.cps.clone(), s.cards.vitale.clone()]
                .into_iter()
                .chain(inserted)
        })
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut missing = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if !used.contains(&name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "profiles no scenario uses: {missing:?}");
}
