//! Method name → handler: [`METHODS`] (what is served), the checks a request passes before its
//! handler runs (a method listed, no member given twice in its parameters), and the table that
//! calls each method's handler in `methods`. `fse.create`, the hot path, is answered first and
//! written around its stored JSON text; `events.subscribe` is given the connection.

use fse_formats::api::{self, ErrorObject};
use serde_json::Value;

use super::jsonrpc::{
    self, cut_echoes, long_strings, scrub, shown, Envelope, JsonText, Reply, Request, SHOWN,
};
use super::methods::{
    attach, card_ops, cards, events, fse, lots, paper, payments, presence, queue, returns, rights,
    status, store, system, workstations,
};
use super::server::Conn;
use crate::caller::{Caller, Peer};
use crate::context::Context;
use crate::error::ApiError;

/// Every method the dispatcher serves; any other name answers `METHOD_NOT_FOUND`.
/// `daemon/api.openrpc.json` describes each of them (a test keeps the two lists equal), and
/// `system.version` lists them.
pub const METHODS: &[&str] = &[
    "system.version",
    "cards.list",
    "cards.verify_pin",
    "cards.pin_status",
    "cards.change_pin",
    "cards.unblock_pin",
    "cards.lock",
    "cards.unlock",
    "cards.authenticate",
    "cards.sign",
    "vitale.read",
    "presence.challenge",
    "rights.get",
    "fse.create",
    "fse.get",
    "fse.list",
    "fse.cancel",
    "fse.resubmit",
    "fse.proof",
    "fse.status",
    "fse.duplicate",
    "fse.attach",
    "lots.list",
    "lots.get",
    "lots.close",
    "transmit.now",
    "returns.list",
    "payments.list",
    "queue.stats",
    "queue.alarms",
    "queue.backup",
    "events.subscribe",
    "system.doctor",
    "store.verify",
    "workstations.pair",
    "workstations.list",
    "workstations.revoke",
];

/// Answers one line; `None` for a notification (a request without an `id` member) and for
/// an empty line.
pub async fn handle_line(ctx: &Context, conn: &mut Conn, line: &mut [u8]) -> Option<Reply> {
    let Request {
        envelope: Envelope { id, method, params },
        duplicate,
        longest,
    } = match jsonrpc::read(line) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let params = match check(&method, params, duplicate.as_ref()) {
        Ok(params) => params,
        // Not run, and a notification is not answered.
        Err(refusal) => return id.map(|id| Reply::err(id, refusal)),
    };
    let params = match permitted(ctx, &conn.caller, &method, params) {
        Ok(params) => params,
        Err(refusal) => return id.map(|id| Reply::err(id, refusal)),
    };
    // Values longer than a message echoes, kept (rarely) to cut them out of the message.
    let long = if longest > SHOWN {
        let mut long = Vec::new();
        long_strings(params.as_ref(), &mut long);
        long
    } else {
        Vec::new()
    };
    let result = call(ctx, conn, &method, params).await;
    let id = id?;
    Some(match result {
        Ok(v) => Reply::ok(id, v),
        Err(ApiError(mut e)) => {
            if !long.is_empty() {
                e.message = cut_echoes(&e.message, &long);
            }
            Reply::err(id, e)
        }
    })
}

/// The checks before a method runs: `method` is one of [`METHODS`], and no member is given
/// twice in its parameters (not "the last one wins"). A request refused has its parameters
/// wiped.
fn check(
    method: &str,
    mut params: Option<Value>,
    duplicate: Option<&jsonrpc::Duplicate>,
) -> Result<Option<Value>, ErrorObject> {
    if !METHODS.contains(&method) {
        if let Some(p) = params.as_mut() {
            scrub(p);
        }
        return Err(ErrorObject::new(
            api::METHOD_NOT_FOUND,
            format!("unknown method {:?}", shown(method)),
            Some("method"),
        ));
    }
    if let Some(at) = duplicate.and_then(jsonrpc::Duplicate::in_params) {
        if let Some(p) = params.as_mut() {
            scrub(p);
        }
        let field = shown(&at);
        return Err(ErrorObject::new(
            api::INVALID_PARAMS,
            format!("invalid params: {field}: a member given twice in its object"),
            Some(&field),
        ));
    }
    Ok(params)
}

/// A workstation's rights (`net::rights`): the method, then the CPS it would use (its
/// `cps_serial` or `serial` parameter, or the CPS the cards' snapshot would pick). Other
/// callers pass. A request refused has its parameters wiped.
fn permitted(
    ctx: &Context,
    caller: &Caller,
    method: &str,
    mut params: Option<Value>,
) -> Result<Option<Value>, ErrorObject> {
    use crate::net::rights;
    let Peer::Workstation { name, .. } = &caller.peer else {
        return Ok(params);
    };
    let rights_of = ctx.network.rights(name);
    let refusal = if !rights::method_allowed(rights_of, method) {
        Some(rights::method_refused(name, method))
    } else if rights::CPS_METHODS.contains(&method) {
        let named = rights::named_cps(params.as_ref());
        let snapshot = ctx.cards.snapshot();
        // A serial that is no CPS present (a Vitale card to lock, say) needs no CPS right;
        // with no CPS at all the handler answers CARD_ABSENT.
        let serial = match named {
            Some(s) => snapshot.cps(Some(&s)).ok().map(|_| s),
            None => snapshot
                .cps(None)
                .ok()
                .and_then(|slot| slot.cps.as_ref())
                .map(|c| c.holder.serial.clone()),
        };
        serial
            .filter(|s| !rights::cps_allowed(rights_of, s))
            .map(|s| rights::cps_refused(name, &s))
    } else {
        None
    };
    match refusal {
        None => Ok(params),
        Some(e) => {
            if let Some(p) = params.as_mut() {
                scrub(p);
            }
            tracing::warn!(workstation = %name, method, "network API: request not permitted");
            Err(e)
        }
    }
}

/// Runs `method` in its request's span: `events.subscribe` with the connection, the others
/// through [`dispatch`].
async fn call(
    ctx: &Context,
    conn: &mut Conn,
    method: &str,
    params: Option<Value>,
) -> Result<JsonText, ApiError> {
    // The span follows the request's future across threads (`instrument`); an entered guard
    // held over an `.await` would corrupt the subscriber's span registry.
    let span = tracing::info_span!("request", method = %method);
    if method == "events.subscribe" {
        span.in_scope(|| events::subscribe(ctx, conn, params))
            .and_then(|v| JsonText::of(&v))
    } else {
        use tracing::Instrument;
        dispatch(ctx, &conn.caller, method, params)
            .instrument(span)
            .await
    }
}

/// Answers a method with its result as JSON text. `fse.create`, the hot path, writes its
/// answer around the sheet's stored JSON text; the others go through a `Value`.
async fn dispatch(
    ctx: &Context,
    caller: &Caller,
    method: &str,
    p: Option<Value>,
) -> Result<JsonText, ApiError> {
    if method == "fse.create" {
        return fse::create(ctx, caller, p).await;
    }
    JsonText::of(&dispatch_value(ctx, caller, method, p).await?)
}

/// The method table: each name of [`METHODS`] (but `fse.create` and `events.subscribe`) and
/// its handler; the handlers that use a card are given the caller.
async fn dispatch_value(
    ctx: &Context,
    caller: &Caller,
    method: &str,
    p: Option<Value>,
) -> Result<Value, ApiError> {
    match method {
        "system.version" => system::version(p).await,
        "cards.list" => cards::list(ctx, p).await,
        "cards.verify_pin" => cards::verify_pin(ctx, caller, p).await,
        "cards.pin_status" => cards::pin_status(ctx, caller, p).await,
        "cards.change_pin" => cards::change_pin(ctx, caller, p).await,
        "cards.unblock_pin" => cards::unblock_pin(ctx, caller, p).await,
        "cards.lock" => cards::lock(ctx, caller, p).await,
        "cards.unlock" => cards::unlock(ctx, caller, p).await,
        "vitale.read" => cards::vitale_read(ctx, caller, p).await,
        "presence.challenge" => presence::challenge(ctx, p).await,
        "rights.get" => rights::get(ctx, caller, p).await,
        "cards.authenticate" => card_ops::authenticate(ctx, caller, p).await,
        "cards.sign" => card_ops::sign(ctx, caller, p).await,
        "fse.get" => fse::get(ctx, p).await,
        "fse.list" => fse::list(ctx, p).await,
        "lots.list" => lots::list(ctx, p).await,
        "lots.get" => lots::get(ctx, p).await,
        "fse.cancel" => fse::cancel(ctx, p).await,
        "fse.resubmit" => fse::resubmit(ctx, p).await,
        "fse.proof" => fse::proof(ctx, p).await,
        "fse.duplicate" => paper::duplicate(ctx, p).await,
        "fse.attach" => attach::attach(ctx, p).await,
        "lots.close" => lots::close(ctx, p).await,
        "transmit.now" => lots::transmit_now(ctx, p).await,
        "queue.alarms" => queue::alarms(ctx, p).await,
        "returns.list" => returns::list(ctx, p).await,
        "fse.status" => status::status(ctx, p).await,
        "payments.list" => payments::list(ctx, p).await,
        "queue.stats" => queue::stats(ctx, p).await,
        "system.doctor" => system::doctor(ctx, p).await,
        "store.verify" => store::verify(ctx, p).await,
        "queue.backup" => queue::backup(ctx, p).await,
        "workstations.pair" => workstations::pair(ctx, p).await,
        "workstations.list" => workstations::list(ctx, p).await,
        "workstations.revoke" => workstations::revoke(ctx, p).await,
        // `handle_line` lets only the names of `METHODS` through; a test calls each of them.
        other => Err(ApiError::new(
            api::INTERNAL_ERROR,
            format!("method {other} is listed but not served"),
            Some("method"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use fse_formats::api;
    use serde_json::json;

    use super::*;
    use crate::api::test_support::{ask, context};

    #[test]
    fn the_schema_describes_exactly_the_methods_served() {
        let doc: Value = serde_json::from_str(include_str!("../../api.openrpc.json")).unwrap();
        let described: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            described, METHODS,
            "daemon/api.openrpc.json and api::METHODS"
        );
        let codes: std::collections::BTreeSet<i64> = doc["components"]["errors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(name, e)| {
                assert_eq!(api::code_name(e["code"].as_i64().unwrap()), name);
                e["code"].as_i64().unwrap()
            })
            .collect();
        let stable: std::collections::BTreeSet<i64> = api::ERROR_CODES.iter().copied().collect();
        assert_eq!(codes, stable, "the schema's error codes");
    }

    #[tokio::test]
    async fn every_listed_method_is_served_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(&dir);
        for method in METHODS {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{}}}}"#);
            let r = ask(&ctx, &line).await;
            let code = r["error"]["code"].as_i64();
            assert_ne!(code, Some(api::METHOD_NOT_FOUND), "{method}: {r}");
            assert_ne!(code, Some(api::INTERNAL_ERROR), "{method}: {r}");
        }
        let r = ask(
            &ctx,
            r#"{"jsonrpc":"2.0","id":1,"method":"system.version"}"#,
        )
        .await;
        assert_eq!(r["result"]["methods"], json!(METHODS));
        for unlisted in [
            "rpc.discover",
            "fse.delete",
            "system.version ",
            "Cards.list",
        ] {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{unlisted}"}}"#);
            let r = ask(&ctx, &line).await;
            assert_eq!(
                r["error"]["code"],
                json!(api::METHOD_NOT_FOUND),
                "{unlisted}"
            );
        }
    }
}
