//! Rights online (ADRi) end to end: fsed on its embedded virtual reader asks the insurer
//! simulator for the rights of the day when a Vitale card's are closed or old, over the real
//! broker (AMQP request/reply on `fsed.rights`) and over the spool, and prices the sheet on
//! them; offline it falls back to the card (recorded on the sheet) or refuses, as configured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{self, Proc, Rpc};

/// The amounts of a G consultation (30.00 €) for an adult in the care path, AMO only:
/// AMO 70 % of 3000 = 2100 cents, less the 200-cent participation forfaitaire = 1900;
/// the patient pays 3000 − 2100 = 900 + 200 = 1100.
const G_AMO_CENTS: u64 = 1900;
const G_PATIENT_CENTS: u64 = 1100;

/// The insurer simulator on the broker, answering rights requests with `knobs`; its lot queue
/// bound to a key of its own (its name deleted when the test ends with [`Cleanup`]), so that no
/// queue bound to every destination outlives the test.
#[cfg(feature = "full")]
fn rights_insurer(knobs: &[&str]) -> Proc {
    let binding = format!("rights{}", common::unique());
    let mut args = vec!["--binding", binding.as_str()];
    args.extend_from_slice(knobs);
    let p = common::start_insurer(&args);
    CREATED.with(|c| {
        c.borrow_mut()
            .push(fse_formats::wire::insurer_queue("amo", &binding))
    });
    p
}

#[cfg(feature = "full")]
thread_local! {
    static CREATED: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Deletes the broker queues the test made (the insurers', fsed's return queues and
/// `fsed.rights`) when dropped.
#[cfg(feature = "full")]
struct Cleanup;

#[cfg(feature = "full")]
impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut names = CREATED.with(|c| std::mem::take(&mut *c.borrow_mut()));
        names.push(fse_formats::wire::RIGHTS_QUEUE.to_string());
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        common::delete_queues(&names);
    }
}

/// fsed on the virtual reader with `config` (TOML: `[transport]`, `[rights]`), the test PKI,
/// and fast cards with `vitale` in slot 1; the PIN verified. Returns fsed, a client, the cards.
fn start(dir: &Path, config: &str, vitale: &str) -> (Proc, Rpc, Proc) {
    let (fsed, mut rpc) = common::start_fsed_virtual(
        dir,
        2,
        config,
        &["--lot-max-sheets", "100", "--lot-max-age-secs", "3600"],
    );
    let (cards, _control) = common::start_fast_cards_on(dir, &["--vitale-profile", vitale]);
    common::wait_cards(&mut rpc, 2);
    rpc.ok("cards.verify_pin", json!({"pin": "1234"}));
    (fsed, rpc, cards)
}

#[cfg(feature = "full")]
/// The `[transport]` of fsed on the test broker, with its own return queue.
fn amqp_transport(url: &str) -> String {
    let queue = format!("fsed.returns.rights.{}", common::unique());
    CREATED.with(|c| c.borrow_mut().push(queue.clone()));
    format!("[transport]\nkind = \"amqp\"\namqp_url = \"{url}\"\nreturn_queue = \"{queue}\"\n")
}

fn rights(offline: &str) -> String {
    format!("[rights]\nenabled = true\ntimeout_ms = 1500\noffline = \"{offline}\"\n")
}

/// A G consultation: the sheet, or the error.
fn consult(rpc: &mut Rpc) -> Value {
    rpc.call("fse.create", json!({"act": {"code": "G"}}))
}

#[cfg(feature = "full")]
fn error_of(reply: &Value) -> (&str, &str, String) {
    let e = &reply["error"];
    (
        e["data"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{reply}")),
        e["data"]["field"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or("").to_string(),
    )
}

#[cfg(feature = "full")]
/// A sheet made on the card's rights after a failed lookup: the fallback recorded, the card's
/// amounts.
fn assert_card_fallback(reply: &Value, why: &str) -> String {
    let sheet = &reply["result"]["sheet"];
    assert_eq!(sheet["rights"]["source"], "card", "{reply}");
    assert_eq!(sheet["rights_source"], "card", "{reply}");
    let fallback = sheet["rights"]["fallback"].as_str().unwrap().to_string();
    assert!(fallback.contains(why), "{fallback}");
    // vitale-adulte's rights opened on 2025-01-01: more than 90 days ago.
    assert!(fallback.contains("card rights updated"), "{fallback}");
    assert_eq!(sheet["amounts"]["amo_cents"], G_AMO_CENTS, "{reply}");
    fallback
}

#[cfg(feature = "full")]
#[test]
fn a_stale_card_is_priced_on_the_rights_online_over_the_broker() {
    let _turn = common::shared_services();
    let _cleanup = Cleanup;
    let dir = tempfile::tempdir().unwrap();
    let mut insurer = rights_insurer(&[]);
    let config = format!("{}{}", amqp_transport(common::AMQP), rights("refuse"));
    let (_fsed, mut rpc, _cards) = start(dir.path(), &config, "vitale-droits-expires");
    // The card says rights closed on 2023-12-31 (fsed alone refuses RIGHTS_CLOSED); the
    // insurer knows them renewed from 2024-01-01 to 2030-12-31.
    let reply = consult(&mut rpc);
    let sheet = &reply["result"]["sheet"];
    assert_eq!(sheet["rights"]["source"], "online", "{reply}");
    assert_eq!(sheet["rights_source"], "online", "{reply}");
    assert!(sheet["rights"]["fallback"].is_null(), "{reply}");
    let digest = sheet["rights"]["answer_digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{digest}");
    assert_eq!(sheet["beneficiary"]["organism"], "011310001", "{reply}");
    assert_eq!(sheet["amounts"]["total_cents"], 3000, "{reply}");
    assert_eq!(sheet["amounts"]["amo_cents"], G_AMO_CENTS, "{reply}");
    assert_eq!(
        sheet["amounts"]["patient_cents"], G_PATIENT_CENTS,
        "{reply}"
    );
    // rights.get on the card's beneficiary shows the same answer, from the cache.
    let r = rpc.ok("rights.get", json!({}));
    assert_eq!(r["source"], "online", "{r}");
    assert_eq!(r["rights_until"], "20301231", "{r}");
    assert_eq!(r["answer_digest"], digest, "{r}");
    assert!(
        r["lookup"].as_str().unwrap().contains("closed on 20231231"),
        "{r}"
    );
    // The insurer stopped: a fresh cached answer still prices the next sheet, with no trip.
    insurer.terminate();
    let again = consult(&mut rpc);
    assert_eq!(
        again["result"]["sheet"]["rights"]["answer_digest"], digest,
        "{again}"
    );
    // vitale.read shows the rights online beside the card's.
    let v = rpc.ok("vitale.read", json!({}));
    assert_eq!(v["rights"][0]["source"], "online", "{v}");
    assert_eq!(v["rights"][0]["beneficiary"], 0, "{v}");
    assert_eq!(v["beneficiaries"][0]["rights_until"], "20231231", "{v}");
}

#[cfg(feature = "full")]
#[test]
fn offline_the_card_is_used_with_the_reason_or_the_sheet_refused() {
    let _turn = common::shared_services();
    let _cleanup = Cleanup;
    // Broker down: a port bound to 0 and released, nothing listens there.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("amqp://127.0.0.1:{}/%2f", gone.local_addr().unwrap().port());
    drop(gone);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}{}", amqp_transport(&url), rights("card"));
    let (_fsed, mut rpc, _cards) = start(dir.path(), &config, "vitale-adulte");
    let reply = consult(&mut rpc);
    assert_card_fallback(&reply, "out of reach");

    // Broker up, insurer in outage: no answer within the 1500 ms; refused as configured.
    let mut insurer = rights_insurer(&["--rights-outage"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}{}", amqp_transport(common::AMQP), rights("refuse"));
    let (_fsed, mut rpc, _cards) = start(dir.path(), &config, "vitale-adulte");
    let reply = consult(&mut rpc);
    let (name, field, message) = error_of(&reply);
    assert_eq!((name, field), ("RIGHTS_STALE", "vitale.rights"), "{reply}");
    assert!(message.contains("no answer within 1500 ms"), "{message}");
    let reason = reply["error"]["data"]["lookup"].as_str().unwrap();
    assert!(message.ends_with(reason), "{reply}");
    insurer.terminate();
}

#[cfg(feature = "full")]
#[test]
fn unknown_beneficiaries_and_forged_answers_are_refused() {
    let _turn = common::shared_services();
    let _cleanup = Cleanup;
    let adult = fse_simulator::profiles::nir("2780275056123");
    // Unknown to the insurer: RIGHTS_UNKNOWN, whatever the offline setting.
    let mut insurer = rights_insurer(&["--rights-unknown", &adult]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}{}", amqp_transport(common::AMQP), rights("card"));
    let (_fsed, mut rpc, _cards) = start(dir.path(), &config, "vitale-adulte");
    let reply = consult(&mut rpc);
    assert_eq!(error_of(&reply).0, "RIGHTS_UNKNOWN", "{reply}");
    assert_eq!(error_of(&reply).1, "vitale.rights", "{reply}");
    let r = rpc.call(
        "rights.get",
        json!({"nir": adult, "birth_date": "19780214", "rank": 1}),
    );
    assert_eq!(error_of(&r).0, "RIGHTS_UNKNOWN", "{r}");
    insurer.terminate();

    // Signed by another insurer (019999999) than the organism it names: not believed, the
    // card's rights used and why recorded.
    let mut insurer = rights_insurer(&["--rights-wrong-signer"]);
    let dir = tempfile::tempdir().unwrap();
    let (_fsed, mut rpc, _cards) = start(dir.path(), &config, "vitale-adulte");
    let fallback = assert_card_fallback(&consult(&mut rpc), "signed by insurer 019999999");
    assert!(fallback.contains("names organism 017510001"), "{fallback}");
    insurer.terminate();

    // A forged signature, fsed refusing: RIGHTS_STALE saying why.
    let mut insurer = rights_insurer(&["--rights-bad-signature"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}{}", amqp_transport(common::AMQP), rights("refuse"));
    let (_fsed, mut rpc, _cards) = start(dir.path(), &config, "vitale-adulte");
    let reply = consult(&mut rpc);
    let (name, _, message) = error_of(&reply);
    assert_eq!(name, "RIGHTS_STALE", "{reply}");
    assert!(message.contains("signature"), "{message}");
    // Stale answers (answered 7 days ago, 86400 s allowed) are refused too.
    insurer.terminate();
    let mut insurer = rights_insurer(&["--rights-stale"]);
    let r = rpc.call(
        "rights.get",
        json!({"nir": adult, "birth_date": "19780214", "rank": 1}),
    );
    let (name, _, message) = error_of(&r);
    assert_eq!(name, "RIGHTS_STALE", "{r}");
    assert!(message.contains("answered_at"), "{message}");
    insurer.terminate();
}

/// Over the spool (no broker): the request file answered by the insurer simulator.
#[test]
fn over_the_spool_too() {
    let dir = tempfile::tempdir().unwrap();
    let (outbox, inbox) = (dir.path().join("out"), dir.path().join("in"));
    let config = format!(
        "[transport]\nkind = \"spool\"\nspool_outbox = \"{}\"\nspool_inbox = \"{}\"\n{}",
        outbox.display(),
        inbox.display(),
        rights("refuse")
    );
    let mut insurer = Proc::start(
        "fse-sim",
        &[
            "insurer",
            "--spool-outbox",
            outbox.to_str().unwrap(),
            "--spool-inbox",
            inbox.to_str().unwrap(),
        ],
    );
    insurer.wait_line("insurer ready", Duration::from_secs(30));
    let (_fsed, mut rpc, _cards) = start(dir.path(), &config, "vitale-droits-expires");
    let reply = consult(&mut rpc);
    let sheet = &reply["result"]["sheet"];
    assert_eq!(sheet["rights"]["source"], "online", "{reply}");
    assert_eq!(sheet["amounts"]["amo_cents"], G_AMO_CENTS, "{reply}");
    assert_eq!(
        sheet["amounts"]["patient_cents"], G_PATIENT_CENTS,
        "{reply}"
    );
    // Nothing left behind in the rights folders.
    for sub in ["requests", "answers"] {
        let left = std::fs::read_dir(outbox.join("rights").join(sub))
            .unwrap()
            .count();
        assert_eq!(left, 0, "{sub}");
    }
    // Refresh asks again: a new answer, a new digest (another request id in it).
    let first = rpc.ok("rights.get", json!({}));
    let again = rpc.ok("rights.get", json!({"refresh": true}));
    assert_eq!(again["source"], "online");
    assert_ne!(first["answer_digest"], again["answer_digest"]);
    insurer.terminate();
}
