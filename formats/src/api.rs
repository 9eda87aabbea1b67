//! The local API's JSON-RPC 2.0 types: envelopes, error codes, and the
//! parameters and results of each method. `daemon/API.md` documents them.
//! One JSON object per line on the Unix socket.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// JSON-RPC: invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: unknown method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC: invalid parameters (the field is named in `data.field`).
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC: internal error.
pub const INTERNAL_ERROR: i64 = -32603;
/// No card of the needed kind is present.
pub const CARD_ABSENT: i64 = 1001;
/// Wrong PIN; `data.tries_left` says how many tries remain.
pub const WRONG_PIN: i64 = 1002;
/// PIN blocked.
pub const PIN_BLOCKED: i64 = 1003;
/// The operation needs a verified PIN.
pub const PIN_REQUIRED: i64 = 1004;
/// The card failed or answered unexpectedly.
pub const CARD_ERROR: i64 = 1005;
/// The card may not do this (staff card, situation without signing rights, expired card).
pub const CARD_NOT_ALLOWED: i64 = 1006;
/// The card is taken by other clients' work, or locked by another client (`cards.lock`), for
/// longer than `[cards] max_wait_ms`: refused at once. `data.retry_after_ms` says when it would
/// likely be served, `data.card` (`cps` or `vitale`) and `data.serial` name the card.
pub const CARD_BUSY: i64 = 1007;
/// A card held by another fsed could not be reached, or the link to it broke during the
/// operation: nothing was stored; `data.fsed` names that fsed, `data.retry_safe` is true (a
/// repeat does not sign twice).
pub const CARD_UNREACHABLE: i64 = 1008;
/// A business rule refused the sheet; `data.field` names the field.
pub const RULE_VIOLATION: i64 = 1010;
/// The practitioner already used this idempotency key for another request (`data.field` is
/// `idempotency_key`; `data.sheet_id` the sheet made with it): nothing was made; or a
/// `cards.sign` request_id used for another card or message (`data.field` is `request_id`).
pub const IDEMPOTENCY_KEY_REUSED: i64 = 1011;
/// Not found (sheet, lot).
pub const NOT_FOUND: i64 = 1020;
/// The durable store failed: nothing was accepted.
pub const STORAGE_ERROR: i64 = 1030;
/// A stored row asked for is damaged (its checksum does not match its bytes, or a column no
/// longer decodes): it is not served. `data.damaged` names it (`kind`, `id`, `reason`).
pub const STORED_ROW_DAMAGED: i64 = 1031;
/// The server already serves its most connections (`api.max_connections`): the connection
/// gets this one error line and is closed.
pub const TOO_MANY_CONNECTIONS: i64 = 1040;
/// The connecting process's user is not allowed (`api.allowed_users`, `api.allowed_groups`):
/// the connection gets this one error line and is closed.
pub const PEER_NOT_ALLOWED: i64 = 1041;
/// The connecting process's user already has its most connections served
/// (`api.max_connections_per_uid`): the connection gets this one error line and is closed.
pub const TOO_MANY_CONNECTIONS_FOR_PEER: i64 = 1042;
/// The connection sent no request line for `api.idle_timeout_secs` while subscribed to no
/// events: it gets this error line (id null) and is closed.
pub const IDLE_TIMEOUT: i64 = 1043;
/// A workstation over the network asked for a method, or a CPS, its rights
/// (`[network.workstations.<name>]`) do not give it: `data.workstation` and `data.method` or
/// `data.cps_serial` say which. Nothing was run.
pub const NOT_PERMITTED: i64 = 1044;
/// The card's rights are closed or too old and no online answer could be used (rights service
/// out of reach, timed out, or its answer refused) while `[rights] offline = "refuse"`:
/// `data.field` is `vitale.rights`, `data.lookup` says why. Nothing was stored.
pub const RIGHTS_STALE: i64 = 1050;
/// The insurer's rights service does not know the beneficiary (NIR, birth date, rank):
/// `data.field` is `vitale.rights`. Nothing was stored.
pub const RIGHTS_UNKNOWN: i64 = 1051;
/// A Vitale app presence token (`presence.app` of `fse.create`) is refused: `data.field` is
/// `presence.app`, `data.reason` one of `malformed`, `untrusted`, `bad_signature`, `expired`,
/// `wrong_practitioner`, `unknown_challenge`, `replayed`. Nothing was made.
pub const APP_TOKEN_REFUSED: i64 = 1052;
/// `fse.attach` refused a document: `data.field` (`content`, `kind`, `id`) and `data.reason`
/// (`type`, `resolution`, `size`, `malformed`, `state`) say why. Nothing was stored.
pub const ATTACHMENT_REFUSED: i64 = 1053;

/// Every stable error code, in the order `daemon/API.md` lists them.
pub const ERROR_CODES: &[i64] = &[
    PARSE_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    INVALID_PARAMS,
    INTERNAL_ERROR,
    CARD_ABSENT,
    WRONG_PIN,
    PIN_BLOCKED,
    PIN_REQUIRED,
    CARD_ERROR,
    CARD_NOT_ALLOWED,
    CARD_BUSY,
    CARD_UNREACHABLE,
    RULE_VIOLATION,
    IDEMPOTENCY_KEY_REUSED,
    NOT_FOUND,
    STORAGE_ERROR,
    STORED_ROW_DAMAGED,
    TOO_MANY_CONNECTIONS,
    PEER_NOT_ALLOWED,
    TOO_MANY_CONNECTIONS_FOR_PEER,
    IDLE_TIMEOUT,
    NOT_PERMITTED,
    RIGHTS_STALE,
    RIGHTS_UNKNOWN,
    APP_TOKEN_REFUSED,
    ATTACHMENT_REFUSED,
];

/// A request as received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Always "2.0".
    pub jsonrpc: String,
    /// Request id (absent for notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// Method name.
    pub method: String,
    /// Parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
}

/// Error details: stable code name, field at fault, and extra facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// Numeric code (JSON-RPC or one of this module's).
    pub code: i64,
    /// Readable message.
    pub message: String,
    /// Structured details: `{"name": "WRONG_PIN", "field": "pin", "tries_left": 2}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error with a stable name and optional field.
    pub fn new(code: i64, message: impl Into<String>, field: Option<&str>) -> Self {
        let mut data = serde_json::Map::new();
        data.insert("name".into(), Value::String(code_name(code).into()));
        if let Some(f) = field {
            data.insert("field".into(), Value::String(f.into()));
        }
        ErrorObject {
            code,
            message: message.into(),
            data: Some(Value::Object(data)),
        }
    }

    /// Adds a fact to `data`.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        if let Some(Value::Object(m)) = &mut self.data {
            m.insert(key.into(), value);
        }
        self
    }
}

/// The stable name of a code.
pub fn code_name(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "PARSE_ERROR",
        INVALID_REQUEST => "INVALID_REQUEST",
        METHOD_NOT_FOUND => "METHOD_NOT_FOUND",
        INVALID_PARAMS => "INVALID_PARAMS",
        INTERNAL_ERROR => "INTERNAL_ERROR",
        CARD_ABSENT => "CARD_ABSENT",
        WRONG_PIN => "WRONG_PIN",
        PIN_BLOCKED => "PIN_BLOCKED",
        PIN_REQUIRED => "PIN_REQUIRED",
        CARD_ERROR => "CARD_ERROR",
        CARD_NOT_ALLOWED => "CARD_NOT_ALLOWED",
        CARD_BUSY => "CARD_BUSY",
        RULE_VIOLATION => "RULE_VIOLATION",
        IDEMPOTENCY_KEY_REUSED => "IDEMPOTENCY_KEY_REUSED",
        NOT_FOUND => "NOT_FOUND",
        STORAGE_ERROR => "STORAGE_ERROR",
        STORED_ROW_DAMAGED => "STORED_ROW_DAMAGED",
        TOO_MANY_CONNECTIONS => "TOO_MANY_CONNECTIONS",
        PEER_NOT_ALLOWED => "PEER_NOT_ALLOWED",
        TOO_MANY_CONNECTIONS_FOR_PEER => "TOO_MANY_CONNECTIONS_FOR_PEER",
        IDLE_TIMEOUT => "IDLE_TIMEOUT",
        NOT_PERMITTED => "NOT_PERMITTED",
        APP_TOKEN_REFUSED => "APP_TOKEN_REFUSED",
        ATTACHMENT_REFUSED => "ATTACHMENT_REFUSED",
        CARD_UNREACHABLE => "CARD_UNREACHABLE",
        RIGHTS_STALE => "RIGHTS_STALE",
        RIGHTS_UNKNOWN => "RIGHTS_UNKNOWN",
        _ => "ERROR",
    }
}

/// A response: exactly one of `result` and `error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// Always "2.0".
    pub jsonrpc: String,
    /// The request's id (null when it could not be read).
    pub id: Value,
    /// Success value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

impl Response {
    /// A success.
    pub fn ok(id: Value, result: Value) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(id: Value, error: ErrorObject) -> Self {
        Response {
            jsonrpc: "2.0".into(),
            id,
            result: None,
            error: Some(error),
        }
    }
}

/// `cards.verify_pin` parameters. The PIN is zeroized by the daemon once sent to the card.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyPinParams {
    /// The 4-digit PIN.
    pub pin: String,
    /// Serial of the CPS, when several are present.
    #[serde(default)]
    pub cps_serial: Option<String>,
}

/// One act requested in `fse.create`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActRequest {
    /// NGAP letter key or CCAM code, e.g. `G`, `AMI`, `DEQP003`.
    pub code: String,
    /// Coefficient in hundredths (default 100).
    #[serde(default = "one_hundred")]
    pub coefficient: u32,
    /// Quantity (default 1).
    #[serde(default = "one")]
    pub quantity: u32,
    /// Date of care `YYYYMMDD` (default today).
    #[serde(default)]
    pub date: Option<String>,
    /// Modifier codes (majorations), e.g. `MEG`, `DE`.
    #[serde(default)]
    pub modifiers: Vec<String>,
    /// Excess fee (dépassement) above the base, cents.
    #[serde(default)]
    pub excess_cents: u64,
    /// The prescriber, for acts on prescription (nurses, physiotherapists).
    #[serde(default)]
    pub prescriber: Option<crate::fse::Prescriber>,
}

fn one_hundred() -> u32 {
    100
}

fn one() -> u32 {
    1
}

/// Who should pay the practitioner directly, as the practice software asks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiersPayantRequest {
    /// The AMO pays its share to the practitioner.
    #[serde(default)]
    pub amo: bool,
    /// The AMC pays its share to the practitioner (needs an AMC in tiers payant on the card).
    #[serde(default)]
    pub amc: bool,
}

/// The beneficiary typed in degraded mode (from the paper attestation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeneficiaryRequest {
    /// NIR with its key (15 characters).
    pub nir: String,
    /// Surname.
    pub surname: String,
    /// Given name.
    pub given_name: String,
    /// Birth date `YYYYMMDD`.
    pub birth_date: String,
    /// Birth rank (default 1).
    #[serde(default = "rank_one")]
    pub rank: u8,
    /// AMO organism: régime (2) caisse (3) centre (4).
    pub organism: String,
}

fn rank_one() -> u8 {
    1
}

/// Degraded mode: no Vitale card; a paper sheet must follow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DegradedRequest {
    /// Why there is no Vitale card (required, non-empty).
    #[serde(default)]
    pub reason: String,
    /// The beneficiary, as typed.
    #[serde(default)]
    pub beneficiary: Option<BeneficiaryRequest>,
}

/// The amounts the practice software computed: fsed refuses the sheet when its own differ.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAmounts {
    /// Total charged.
    #[serde(default)]
    pub total_cents: Option<u64>,
    /// AMO share, participation deducted.
    #[serde(default)]
    pub amo_cents: Option<u64>,
    /// AMC share.
    #[serde(default)]
    pub amc_cents: Option<u64>,
    /// What the patient bears.
    #[serde(default)]
    pub patient_cents: Option<u64>,
    /// What the patient pays today.
    #[serde(default)]
    pub due_cents: Option<u64>,
}

/// `fse.create` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FseCreateParams {
    /// The acts, in order (1 to [`MAX_ACTS`]).
    #[serde(default)]
    pub acts: Vec<ActRequest>,
    /// One act: shorthand for `acts: [act]` (give one of `act` and `acts`).
    #[serde(default)]
    pub act: Option<ActRequest>,
    /// Index of the beneficiary on the Vitale card (default 0, the assuré).
    #[serde(default)]
    pub beneficiary: usize,
    /// Index of the CPS situation d'exercice (default 0).
    #[serde(default)]
    pub situation: usize,
    /// Serial of the CPS, when several are present.
    #[serde(default)]
    pub cps_serial: Option<String>,
    /// A retried create with the same key returns the same sheet.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Care path (doctors): default `treating`; `not_applicable` for other professions.
    #[serde(default)]
    pub care_path: Option<crate::rules::CarePath>,
    /// The acts are care for the beneficiary's ALD (the card must show an open ALD).
    #[serde(default)]
    pub ald: bool,
    /// Work accident or occupational disease: its date and number.
    #[serde(default)]
    pub at_mp: Option<crate::fse::AtMp>,
    /// Tiers payant asked for; default: what the law makes compulsory, and the AMC's when its
    /// contract pays the practitioner directly.
    #[serde(default)]
    pub tiers_payant: Option<TiersPayantRequest>,
    /// For a remplaçant: the practitioner replaced.
    #[serde(default)]
    pub replaced: Option<crate::fse::ReplacedPractitioner>,
    /// Degraded mode (no Vitale card), with its reason and the beneficiary typed.
    #[serde(default)]
    pub degraded: Option<DegradedRequest>,
    /// The amounts the practice software expects.
    #[serde(default)]
    pub expected: Option<ExpectedAmounts>,
    /// The patient's presence shown otherwise than by the Vitale card in the reader: the
    /// Vitale app's token (`{"app": "FSEDAPP1:…"}`). The beneficiary is then the token's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceRequest>,
}

/// `fse.create`'s `presence`: how the patient's presence is shown without the card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    /// The Vitale app's presence token, in its text form (`FSEDAPP1:` + base64url), as the
    /// QR code reads.
    pub app: String,
}

/// `presence.challenge` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceChallengeParams {
    /// Serial of the CPS whose holder the token will be bound to, when several are present.
    #[serde(default)]
    pub cps_serial: Option<String>,
}

/// `presence.challenge` result: what the Vitale app binds its token to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChallenge {
    /// 16 random bytes, hex (32 digits).
    pub challenge: String,
    /// National id of the practitioner (the CPS holder) the token must name.
    pub practitioner_id: String,
    /// When the challenge stops being accepted, `YYYY-MM-DDTHH:MM:SSZ`.
    pub expires_at: String,
}

impl FseCreateParams {
    /// SHA-256 of the request without its idempotency key, in a canonical form: the parameters
    /// as parsed (defaults filled in: `"coefficient": 100` given or not is the same request),
    /// written again by serde in their declared order, without spaces. So the order of the
    /// members and the white space of the line do not change it; any value that changes the
    /// request does, and so does asking the same in another shape (`act` or `acts: [..]`).
    /// What `fse.create` compares a retry with.
    pub fn request_hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let unkeyed = FseCreateParams {
            idempotency_key: None,
            ..self.clone()
        };
        // Serializing these plain structs (strings, numbers, options, vectors) cannot fail;
        // were it to, the empty text still hashes the same for the same request.
        let text = serde_json::to_vec(&unkeyed).unwrap_or_default();
        Sha256::digest(&text).into()
    }
}

/// The most acts one sheet carries.
pub const MAX_ACTS: usize = 30;

/// `fse.create` result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FseCreated {
    /// Store id of the sheet.
    pub id: i64,
    /// Sheet number, per practitioner.
    pub number: u64,
    /// State: `accepted` on creation.
    pub state: String,
    /// The sheet.
    pub sheet: crate::fse::CareSheet,
}

/// `lots.close` parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotsCloseParams {
    /// Only this practitioner's open sheets (default: all).
    #[serde(default)]
    pub practitioner_id: Option<String>,
}

/// `fse.get` parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FseGetParams {
    /// Store id.
    pub id: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stable_code_has_its_own_name() {
        let names: std::collections::BTreeSet<&str> =
            ERROR_CODES.iter().map(|&c| code_name(c)).collect();
        assert_eq!(names.len(), ERROR_CODES.len(), "{names:?}");
        assert!(!names.contains("ERROR"), "{names:?}");
        assert_eq!(code_name(0), "ERROR");
    }

    #[test]
    fn the_request_hash_ignores_the_key_the_member_order_and_the_spaces_only() {
        let parse = |text: &str| serde_json::from_str::<FseCreateParams>(text).unwrap();
        let hash = |text: &str| parse(text).request_hash();
        let base =
            hash(r#"{"act":{"code":"G"},"tiers_payant":{"amo":true},"idempotency_key":"k1"}"#);
        // Another key, another order of members, other spaces, a default written out: the same.
        assert_eq!(
            base,
            hash(
                r#"{ "idempotency_key": "k2", "tiers_payant": {"amo": true},
                      "act": {"coefficient": 100, "code": "G"} }"#
            )
        );
        assert_eq!(
            base,
            hash(r#"{"act":{"code":"G"},"tiers_payant":{"amo":true,"amc":false}}"#)
        );
        // Any change of the request: another hash.
        for other in [
            r#"{"act":{"code":"G"},"tiers_payant":{"amo":false}}"#,
            r#"{"act":{"code":"G","coefficient":150},"tiers_payant":{"amo":true}}"#,
            r#"{"act":{"code":"G"},"tiers_payant":{"amo":true},"beneficiary":1}"#,
            r#"{"acts":[{"code":"G"}],"tiers_payant":{"amo":true}}"#,
        ] {
            assert_ne!(base, hash(other), "{other}");
        }
        // SHA-256 of the canonical text, worked out apart.
        use sha2::{Digest, Sha256};
        let p = parse(r#"{"act":{"code":"G"}}"#);
        let text = serde_json::to_string(&p).unwrap();
        assert!(
            text.starts_with(r#"{"acts":[],"act":{"code":"G","coefficient":100"#),
            "{text}"
        );
        assert_eq!(
            p.request_hash(),
            <[u8; 32]>::from(Sha256::digest(text.as_bytes()))
        );
    }
}
