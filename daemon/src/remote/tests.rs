#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::connector::{Connecting, Connector, Stream};
use super::*;
use crate::events::{Bus, Received, Selection};

/// Connects every link to the one end of an in-memory pipe it was given.
struct Pipe(Mutex<Option<tokio::io::DuplexStream>>);

impl Connector for Pipe {
    fn connect<'a>(&'a self, _address: &'a str) -> Connecting<'a> {
        let s = self.0.lock().unwrap().take();
        Box::pin(async move {
            match s {
                Some(s) => Ok(Box::new(s) as Box<dyn Stream>),
                None => std::future::pending().await,
            }
        })
    }
}

fn vitale_entry(reader: &str, serial: &str) -> serde_json::Value {
    let mut data = fse_simulator::profiles::default_vitale_data();
    data.serial = serial.into();
    json!({
        "reader": reader, "atr": "3B00", "kind": "vitale", "serial": serial,
        "pin_verified": false, "vitale": data,
        "location": { "fsed": "local", "address": null, "reader": reader },
    })
}

/// The next request line the other side reads: (id, method).
async fn request(
    rd: &mut BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>,
) -> (u64, String) {
    let mut line = String::new();
    rd.read_line(&mut line).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    (
        v["id"].as_u64().unwrap(),
        v["method"].as_str().unwrap().to_string(),
    )
}

async fn write(wr: &mut tokio::io::WriteHalf<tokio::io::DuplexStream>, v: serde_json::Value) {
    wr.write_all(format!("{v}\n").as_bytes()).await.unwrap();
}

async fn next_event(sub: &mut crate::events::Subscription) -> serde_json::Value {
    match tokio::time::timeout(std::time::Duration::from_secs(10), sub.recv())
        .await
        .unwrap()
        .unwrap()
    {
        Received::Event(ev) => ev,
        Received::Lagged(n) => panic!("lagged {n}"),
    }
}

#[tokio::test]
async fn the_remote_snapshot_follows_the_other_fseds_events() {
    let (here, there) = tokio::io::duplex(1 << 16);
    let section = config::RemoteSection {
        fsed: vec![config::RemoteFsed {
            name: "reception".into(),
            address: "unix:/nowhere".into(),
        }],
        ..Default::default()
    };
    let bus = Bus::default();
    let selection = Selection::default();
    let mut sub = bus.subscribe(selection);
    let (_trigger, shutdown) = crate::shutdown::channel();
    let remote = RemoteCards::start(
        &section,
        Arc::new(Pipe(Mutex::new(Some(here)))),
        None,
        bus.clone(),
        Arc::new(tokio::sync::Notify::new()),
        shutdown,
    );
    let (rd, mut wr) = tokio::io::split(there);
    let mut rd = BufReader::new(rd);
    // The link subscribes first, then lists.
    let (sub_id, m) = request(&mut rd).await;
    assert_eq!(m, "events.subscribe");
    let (list_id, m) = request(&mut rd).await;
    assert_eq!(m, "cards.list");
    write(
        &mut wr,
        json!({"jsonrpc":"2.0","id":sub_id,"result":{"subscribed":true}}),
    )
    .await;
    write(
        &mut wr,
        json!({"jsonrpc":"2.0","id":list_id,"result":[vitale_entry("slot 1", "VIT-9")]}),
    )
    .await;

    let ev = next_event(&mut sub).await;
    assert_eq!(ev["event"], "card.inserted");
    assert_eq!(ev["serial"], "VIT-9");
    assert_eq!(ev["location"]["fsed"], "reception");
    let card = remote
        .vitale(None)
        .expect("the remote Vitale card is known");
    assert_eq!(card.location.reader, "slot 1");
    assert_eq!(card.shown()["location"]["fsed"], "reception");
    assert_eq!(remote.status()[0].cards, 1);
    assert!(remote.status()[0].reachable);

    // A removal there: forgotten here, announced with its location.
    write(&mut wr, json!({"jsonrpc":"2.0","method":"event","params":{"event":"card.removed","at":"x","reader":"slot 1"}})).await;
    let ev = next_event(&mut sub).await;
    assert_eq!(ev["event"], "card.removed");
    assert_eq!(ev["location"]["fsed"], "reception");
    assert!(remote.vitale(None).is_none());

    // An insertion there: listed again, then known here.
    write(&mut wr, json!({"jsonrpc":"2.0","method":"event","params":{"event":"card.inserted","at":"x","reader":"slot 2","kind":"vitale","serial":"VIT-8","atr":"3B00"}})).await;
    let (id, m) = request(&mut rd).await;
    assert_eq!(m, "cards.list");
    write(
        &mut wr,
        json!({"jsonrpc":"2.0","id":id,"result":[vitale_entry("slot 2", "VIT-8")]}),
    )
    .await;
    let ev = next_event(&mut sub).await;
    assert_eq!(ev["event"], "card.inserted");
    assert_eq!(
        remote.vitale(Some("VIT-8")).unwrap().location.reader,
        "slot 2"
    );
    // The other fsed re-publishes the removal of a card it holds remotely (with its
    // location), in a reader of the same name: not its own card, nothing changes here.
    write(&mut wr, json!({"jsonrpc":"2.0","method":"event","params":{"event":"card.removed","at":"x","reader":"slot 2","location":{"fsed":"desk","address":"unix:/d","reader":"slot 2"}}})).await;
    // A marker after it (`lagged` makes the link list again): once that list is asked for,
    // the event before it was read.
    write(
        &mut wr,
        json!({"jsonrpc":"2.0","method":"event","params":{"event":"lagged","at":"x","missed":1}}),
    )
    .await;
    let (id, m) = request(&mut rd).await;
    assert_eq!(m, "cards.list");
    assert!(remote.vitale(Some("VIT-8")).is_some(), "still known");
    write(
        &mut wr,
        json!({"jsonrpc":"2.0","id":id,"result":[vitale_entry("slot 2", "VIT-8")]}),
    )
    .await;

    // The link breaks: the card is no longer usable, its removal announced, a call refused
    // with CARD_UNREACHABLE naming the fsed.
    drop(wr);
    drop(rd);
    let ev = next_event(&mut sub).await;
    assert_eq!(ev["event"], "card.removed");
    assert!(remote.snapshot().is_empty());
    assert!(!remote.status()[0].reachable);
    let err = remote
        .call("reception", "cards.authenticate", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.0.code, api::CARD_UNREACHABLE);
    assert_eq!(err.0.data.as_ref().unwrap()["fsed"], "reception");
    assert_eq!(err.0.data.as_ref().unwrap()["retry_safe"], true);
}

#[tokio::test]
async fn a_link_cut_during_a_call_fails_it_cleanly() {
    let (here, there) = tokio::io::duplex(1 << 16);
    let section = config::RemoteSection {
        fsed: vec![config::RemoteFsed {
            name: "desk2".into(),
            address: "unix:/nowhere".into(),
        }],
        ..Default::default()
    };
    let (_trigger, shutdown) = crate::shutdown::channel();
    let remote = RemoteCards::start(
        &section,
        Arc::new(Pipe(Mutex::new(Some(here)))),
        None,
        Bus::default(),
        Arc::new(tokio::sync::Notify::new()),
        shutdown,
    );
    let (rd, mut wr) = tokio::io::split(there);
    let mut rd = BufReader::new(rd);
    let (a, _) = request(&mut rd).await;
    let (b, _) = request(&mut rd).await;
    write(
        &mut wr,
        json!({"jsonrpc":"2.0","id":a,"result":{"subscribed":true}}),
    )
    .await;
    write(
        &mut wr,
        json!({"jsonrpc":"2.0","id":b,"result":[vitale_entry("slot 1", "VIT-9")]}),
    )
    .await;
    while remote.vitale(None).is_none() {
        tokio::task::yield_now().await;
    }
    let card = remote.vitale(None).unwrap();
    let asking = tokio::spawn({
        let remote = remote.clone();
        async move { remote.authenticate(&card, &[5; 32]).await }
    });
    // The request arrives there; the link is cut before the answer.
    let (_, m) = request(&mut rd).await;
    assert_eq!(m, "cards.authenticate");
    drop(wr);
    drop(rd);
    let err = asking.await.unwrap().unwrap_err();
    assert_eq!(err.0.code, api::CARD_UNREACHABLE, "{err:?}");
    assert!(err.0.message.contains("desk2"), "{}", err.0.message);
}

#[test]
fn the_doctor_names_each_remote_fsed_and_warns_of_one_out_of_reach() {
    let up = LinkStatus {
        name: "reception".into(),
        address: "10.0.0.2:7380".into(),
        reachable: true,
        since: "2026-12-07T07:00:00Z".into(),
        last_error: None,
        cards: 2,
    };
    let ok = crate::doctor::remote_cards(std::slice::from_ref(&up));
    assert_eq!(ok.status, crate::doctor::Status::Ok);
    assert!(
        ok.detail
            .contains("reception (10.0.0.2:7380): reachable since 2026-12-07T07:00:00Z, 2 card(s)"),
        "{}",
        ok.detail
    );
    let down = LinkStatus {
        name: "desk2".into(),
        address: "10.0.0.3:7380".into(),
        reachable: false,
        since: "2026-12-07T07:10:00Z".into(),
        last_error: Some("connection refused".into()),
        cards: 0,
    };
    let warn = crate::doctor::remote_cards(&[up, down]);
    assert_eq!(warn.status, crate::doctor::Status::Warning);
    assert!(
        warn.detail.contains(
            "desk2 (10.0.0.3:7380): out of reach since 2026-12-07T07:10:00Z: connection refused"
        ),
        "{}",
        warn.detail
    );
    assert!(warn.fix.is_some());
}

#[test]
fn the_remote_section_names_its_bad_values() {
    let mut s = config::RemoteSection::default();
    assert!(s.problems().is_empty());
    assert_eq!(s.timeout_ms, 10_000);
    assert_eq!(
        s.identity_dir(std::path::Path::new("/var/lib/fsed")),
        std::path::Path::new("/var/lib/fsed/network/identity")
    );
    s.timeout_ms = 50;
    s.fsed = vec![
        config::RemoteFsed {
            name: "local".into(),
            address: "unix:/run/a.sock".into(),
        },
        config::RemoteFsed {
            name: "desk".into(),
            address: "nowhere".into(),
        },
        config::RemoteFsed {
            name: "desk".into(),
            address: "10.0.0.2:7380".into(),
        },
    ];
    let keys: Vec<&str> = s.problems().iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "remote.timeout_ms",
            "remote.fsed.name",
            "remote.fsed.address",
            "remote.fsed.name"
        ]
    );
}
