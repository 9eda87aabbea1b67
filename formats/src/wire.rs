//! Names both ends of the broker and spool transports agree on: exchanges,
//! routing, message types, file suffixes.
//!
//! AMQP topology: lots go to a topic exchange per insurer kind
//! ([`EXCHANGE_AMO`], [`EXCHANGE_AMC`]) with routing key = destination
//! organism code; each insurer consumes from its own durable quorum queue.
//! A lot message carries `message_id` = lot id, `reply_to` = the sender's
//! return queue; the insurer answers ARLs on the default exchange to that
//! queue. Spool: the sender writes `<lot id>.lot` into the outbox (write to a
//! `.tmp` name, fsync, rename); the insurer writes `<lot id>.arl` into the inbox.

/// Topic exchange for lots to the mandatory insurers.
pub const EXCHANGE_AMO: &str = "fsed.amo";
/// Topic exchange for DRE lots to the supplementary insurers.
pub const EXCHANGE_AMC: &str = "fsed.amc";
/// Direct exchange of dead letters (returns fsed could not apply): each queue's dead letters
/// go to `<queue>.dead`.
pub const EXCHANGE_DEAD: &str = "fsed.dead";
/// AMQP `type` of a lot message.
pub const TYPE_LOT: &str = "fsed.lot.v1";
/// AMQP `type` of an ARL message.
pub const TYPE_ARL: &str = "fsed.arl.v1";
/// AMQP `type` of a payment return message.
pub const TYPE_PAYMENT: &str = "fsed.payment.v1";
/// AMQP `type` of a DRE lot message (to the AMC).
pub const TYPE_DRE_LOT: &str = "fsed.dre-lot.v1";
/// AMQP `type` of an attachment lot message (`AttachmentLot`, to the AMO exchange with the
/// destination as routing key, like the lot whose header references its documents).
pub const TYPE_ATTACHMENT_LOT: &str = "fsed.attachment-lot.v1";
/// Spool suffix of an attachment lot file (`<attachment lot id>.att`).
pub const SPOOL_ATTACHMENT_LOT_SUFFIX: &str = "att";
/// Content type of DER payloads.
pub const CONTENT_TYPE_DER: &str = "application/der";
/// Spool suffix of a lot file.
pub const SPOOL_LOT_SUFFIX: &str = "lot";
/// Spool suffix of a DRE lot file (`<lot id>.<AMC number>.dre`).
pub const SPOOL_DRE_LOT_SUFFIX: &str = "dre";
/// Spool suffix of an ARL file.
pub const SPOOL_ARL_SUFFIX: &str = "arl";
/// Spool suffix of a payment return file.
pub const SPOOL_PAYMENT_SUFFIX: &str = "pay";
/// Queue the insurers' rights responders consume rights requests from (AMQP request/reply:
/// `reply_to` = the asker's reply queue, `correlation_id` = the request id, `expiration` = the
/// asker's deadline in milliseconds).
pub const RIGHTS_QUEUE: &str = "fsed.rights";
/// AMQP `type` of a rights request message.
pub const TYPE_RIGHTS_REQUEST: &str = "fsed.rights-request.v1";
/// AMQP `type` of a rights answer message (a `SignedReturn` of kind rights).
pub const TYPE_RIGHTS_ANSWER: &str = "fsed.rights-answer.v1";
/// Folder of the spool outbox holding rights exchanges: the asker writes
/// `rights/requests/<request id>.der`, the insurer answers `rights/answers/<request id>.der`
/// (both written under a hidden temporary name and renamed).
pub const SPOOL_RIGHTS_DIR: &str = "rights";
/// Sub-folder of [`SPOOL_RIGHTS_DIR`] of the requests.
pub const SPOOL_RIGHTS_REQUESTS: &str = "requests";
/// Sub-folder of [`SPOOL_RIGHTS_DIR`] of the answers.
pub const SPOOL_RIGHTS_ANSWERS: &str = "answers";
/// Suffix of a rights request or answer file.
pub const SPOOL_RIGHTS_SUFFIX: &str = "der";
/// Default return queue of an fsed instance (one per practice).
pub const DEFAULT_RETURN_QUEUE: &str = "fsed.returns";

/// Header of a dead-lettered return: why fsed refused it, a stable code (`bad_signature`,
/// `wrong_insurer`, …; `daemon/API.md` lists them).
pub const HEADER_DEAD_REASON: &str = "x-fsed-reason";
/// Header of a dead-lettered return: why fsed refused it, in words.
pub const HEADER_DEAD_DETAIL: &str = "x-fsed-detail";
/// Folder of the spool inbox where refused return files are moved, each with `<name>.reason`.
pub const SPOOL_REFUSED_DIR: &str = "refused";

/// The dead-letter queue of `queue` (bound to [`EXCHANGE_DEAD`] with its own name as key).
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

/// The queue an insurer simulator consumes for `kind` (`amo` / `amc`) and binding key.
pub fn insurer_queue(kind: &str, binding: &str) -> String {
    format!("insurer.{kind}.{}", binding.replace(['#', '*'], "all"))
}
