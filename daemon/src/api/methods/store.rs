//! `store.*`: the stored rows checked against their checksums.

use serde_json::Value;

use crate::api::params::no_params;
use crate::context::Context;
use crate::error::ApiError;

use super::to_value;

/// `store.verify`: every stored body checked; the damaged rows named by id.
pub(in crate::api) async fn verify(ctx: &Context, p: Option<Value>) -> Result<Value, ApiError> {
    no_params(p)?;
    to_value(ctx.store.read(|q| q.verify()).await?)
}
