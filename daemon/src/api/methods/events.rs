//! `events.subscribe`: a connection's event notifications, and the names one may select.

use fse_formats::api;
use serde_json::{json, Value};

use crate::api::jsonrpc::{encode_line, shown};
use crate::api::params::params;
use crate::api::server::Conn;
use crate::context::Context;
use crate::error::ApiError;

/// The names `events.subscribe` may select: every event of `Event` in `api.openrpc.json`
/// but `lagged`, which a subscriber always gets.
pub const EVENT_NAMES: &[&str] = &[
    "card.inserted",
    "card.removed",
    "card.session_ended",
    "reader.found",
    "reader.lost",
    "sheet.accepted",
    "sheet.cancelled",
    "sheet.resubmitted",
    "sheet.deadline",
    "sheet.paper_duplicate",
    "sheet.attached",
    "sheet.paper_missing",
    "attachment_lot.sent",
    "sheet.paid",
    "sheet.refused",
    "lot.closed",
    "lot.signed",
    "lot.sign_failed",
    "lot.sent",
    "lot.unroutable",
    "lot.resent",
    "arl.received",
    "return.dead_lettered",
    "dre_lot.sent",
    "dre_lot.unroutable",
    "store.damaged",
];

/// `events.subscribe`: from now on this connection also receives `event` notifications.
pub(in crate::api) fn subscribe(
    ctx: &Context,
    conn: &mut Conn,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        events: Option<Vec<String>>,
    }
    let P { events } = params(p)?;
    for (i, name) in events.iter().flatten().enumerate() {
        if !EVENT_NAMES.contains(&name.as_str()) {
            return Err(ApiError::invalid(
                &format!("events[{i}]"),
                format!(
                    "unknown event {:?} (one of {})",
                    shown(name),
                    EVENT_NAMES.join(", ")
                ),
            ));
        }
    }
    let Some(out) = conn.out.clone() else {
        return Err(ApiError::new(
            api::INVALID_REQUEST,
            "events need a socket connection",
            None,
        ));
    };
    // A second call changes the selection of the running subscription.
    conn.selection.set(events);
    if conn.subscription.is_none() {
        let mut sub = ctx.events.subscribe(conn.selection.clone());
        conn.subscription = Some(tokio::spawn(async move {
            while let Some(received) = sub.recv().await {
                let params = match received {
                    crate::events::Received::Event(ev) => ev,
                    crate::events::Received::Lagged(n) => {
                        crate::events::event("lagged", json!({ "missed": n }))
                    }
                };
                let note = json!({ "jsonrpc": "2.0", "method": "event", "params": params });
                if out.send(encode_line(&note)).await.is_err() {
                    return;
                }
            }
        }));
    }
    Ok(json!({ "subscribed": true }))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::api::test_support::one_connection;

    #[test]
    fn the_events_one_may_select_are_those_of_the_schema() {
        let doc: Value = serde_json::from_str(include_str!("../../../api.openrpc.json")).unwrap();
        let described: Vec<&str> = doc["components"]["schemas"]["Event"]["properties"]["event"]
            ["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .filter(|e| *e != "lagged")
            .collect();
        assert_eq!(described, EVENT_NAMES);
        let selectable: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "events.subscribe")
            .unwrap()["params"][0]["schema"]["items"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(selectable, EVENT_NAMES);
    }

    #[tokio::test]
    async fn a_subscriber_gets_only_the_events_it_selected_and_may_change_them() {
        let dir = tempfile::tempdir().unwrap();
        let (bus, trigger, server, mut lines, mut w) = one_connection(&dir).await;
        let mut next = async || -> Value {
            serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap()
        };
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"events.subscribe\",\"params\":{\"events\":[\"lot.sent\",\"lot.sent.typo\"]}}\n")
            .await
            .unwrap();
        let refused = next().await;
        assert_eq!(
            refused["error"]["code"],
            json!(api::INVALID_PARAMS),
            "{refused}"
        );
        assert_eq!(
            refused["error"]["data"]["field"],
            json!("events[1]"),
            "{refused}"
        );
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"events.subscribe\",\"params\":{\"events\":[\"lot.sent\"]}}\n")
            .await
            .unwrap();
        assert_eq!(next().await["result"]["subscribed"], json!(true));
        bus.publish("sheet.accepted", json!({"id": 1}));
        bus.publish("lot.sent", json!({"lot_id": "L1"}));
        let ev = next().await;
        assert_eq!(ev["params"]["event"], json!("lot.sent"), "{ev}");
        // A second call changes the selection.
        w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"events.subscribe\",\"params\":{\"events\":[\"sheet.accepted\"]}}\n")
            .await
            .unwrap();
        assert_eq!(next().await["id"], json!(3));
        bus.publish("lot.sent", json!({"lot_id": "L2"}));
        bus.publish("sheet.accepted", json!({"id": 2}));
        let ev = next().await;
        assert_eq!(
            (ev["params"]["event"].as_str(), ev["params"]["id"].as_i64()),
            (Some("sheet.accepted"), Some(2)),
            "{ev}"
        );
        trigger.fire();
        server.await.unwrap();
    }
}
