//! JSON text fsed made itself, valid by construction: what a reply carries as its `result`
//! without a parse in between (`fse.create` answers around the sheet's stored JSON text). A
//! leaf module, so that `billing` makes its answer without depending on the API.

use fse_formats::api;

use crate::error::ApiError;

/// JSON text, valid by construction: serialized by fsed itself.
#[derive(Debug)]
pub struct JsonText(String);

impl JsonText {
    /// `v` serialized.
    pub fn of(v: &impl serde::Serialize) -> Result<JsonText, ApiError> {
        serde_json::to_string(v)
            .map(JsonText)
            .map_err(|e| ApiError::new(api::INTERNAL_ERROR, e.to_string(), None))
    }

    /// Text fsed has just made from values it serialized (see `billing::Created`).
    pub(crate) fn trusted(text: String) -> JsonText {
        JsonText(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
