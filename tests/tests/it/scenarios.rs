//! The scenario catalogue (`simulator/scenarios/`), run whole through `fse-sim scenarios run`
//! (each scenario on its own fsed on the embedded virtual reader, the spool and the insurer
//! simulator: no pcscd, no broker), its reports written to `target/scenarios/`; a scenario
//! expecting one cent too many makes the run fail, naming the step, the field and both figures;
//! and the runner on a given fsed socket runs what it can and skips the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{self, bin};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn catalogue_dir() -> PathBuf {
    workspace().join("simulator/scenarios")
}

/// `target/scenarios/` (under `CARGO_TARGET_DIR` when set).
fn reports_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join("scenarios")
}

/// The `<testcase …>` elements of a JUnit XML text: each one's attributes and body.
fn testcases(xml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<testcase ") {
        let tail = &rest[start..];
        let head_end = tail.find('>').expect("a testcase tag ends");
        let head = &tail[..head_end];
        let (body, next) = if head.ends_with('/') {
            (String::new(), &tail[head_end + 1..])
        } else {
            let close = tail.find("</testcase>").expect("a testcase is closed");
            (tail[head_end + 1..close].to_string(), &tail[close..])
        };
        out.push((head.to_string(), body));
        rest = next;
    }
    out
}

/// An attribute's value in a tag's text.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[at..].find('"')?;
    Some(tag[at..at + end].to_string())
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(bin("fse-sim"))
        .args(["scenarios", "run", "--fsed"])
        .arg(bin("fsed"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_whole_catalogue_passes_with_its_junit_json_and_html_reports() {
    let dir = reports_dir();
    let (junit, json, html) = (
        dir.join("junit.xml"),
        dir.join("scenarios.json"),
        dir.join("scenarios.html"),
    );
    let files = std::fs::read_dir(catalogue_dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    let out = run(&[
        "--dir",
        catalogue_dir().to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["failed"], 0, "{stdout}");
    let total = report["total"].as_u64().unwrap() as usize;
    assert!(total >= 80, "{total} scenarios, at least 80 wanted");
    assert_eq!(total, files, "one scenario per file");
    // Skipped only where the machine cannot (a tmpfs without mount rights), with why.
    for s in report["scenarios"].as_array().unwrap() {
        if s["status"] == "skipped" {
            assert!(s["message"].as_str().is_some_and(|m| !m.is_empty()), "{s}");
        }
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    let cases = testcases(&xml);
    assert_eq!(cases.len(), files, "one testcase per scenario file");
    assert!(cases.iter().all(|(_, body)| !body.contains("<failure")));
    assert_eq!(
        attribute(&xml[xml.find("<testsuite ").unwrap()..], "tests").as_deref(),
        Some(files.to_string().as_str())
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    // Self-contained: no script, no stylesheet link, no image or frame, no remote address.
    for outside in [
        "<script", "<link", "src=", "<iframe", "http://", "https://", "url(",
    ] {
        assert!(!page.contains(outside), "the HTML report holds {outside:?}");
    }
    assert_eq!(page.matches("<details id=").count(), files);
}

#[test]
fn a_scenario_expecting_one_cent_too_many_fails_the_run_naming_step_field_and_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(catalogue_dir().join("001-gp-consultation.toml")).unwrap();
    // G 30.00 € × 70 % = 21.00 − 2.00 participation = 19.00 €: 1901 is one cent wrong.
    assert!(text.contains("amo_cents = 1900"));
    let wrong = text
        .replace("amo_cents = 1900", "amo_cents = 1901")
        .replace(
            "id = \"gp-consultation\"",
            "id = \"gp-consultation-wrong-cent\"",
        );
    let scen = tmp.path().join("scenarios");
    std::fs::create_dir(&scen).unwrap();
    std::fs::write(scen.join("wrong.toml"), wrong).unwrap();
    let junit = tmp.path().join("junit.xml");
    let out = run(&[
        "--dir",
        scen.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let cases = testcases(&xml);
    assert_eq!(cases.len(), 1);
    let failure = &cases[0].1;
    let at = failure.find("<failure ").expect("a failure element");
    let message = attribute(&failure[at..], "message").unwrap();
    assert!(message.starts_with("steps[0] create"), "{message}");
    assert!(
        message.contains("result.sheet.amounts.amo_cents"),
        "{message}"
    );
    assert!(message.contains("expected 1901"), "{message}");
    assert!(message.contains("got 1900"), "{message}");
}

#[test]
fn on_a_given_socket_the_runner_runs_what_it_can_and_skips_the_rest_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let (_fsed, mut rpc) = common::start_fsed_virtual(dir.path(), 2, "", &[]);
    let (_cards, _control) = common::start_fast_cards_on(dir.path(), &[]);
    common::wait_cards(&mut rpc, 2);
    let json = dir.path().join("run.json");
    let out = Command::new(bin("fse-sim"))
        .args(["scenarios", "run", "--socket"])
        .arg(dir.path().join("fsed.sock"))
        .args(["--dir", catalogue_dir().to_str().unwrap()])
        .args([
            "--filter",
            "r01-unknown-act",
            "--filter",
            "c-vitale-removed",
        ])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["total"], 2);
    let by_id = |id: &str| {
        report["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    // The unknown act needs only the socket (the PIN is verified by the runner's set-up step).
    assert_eq!(by_id("r01-unknown-act")["status"], "passed");
    // Taking a card out needs the runner's own card simulator: skipped, and the step after it.
    let removed = by_id("c-vitale-removed");
    assert_eq!(removed["status"], "skipped", "{removed}");
    assert_eq!(removed["steps"][1]["detail"], "follows a skipped step");
}
