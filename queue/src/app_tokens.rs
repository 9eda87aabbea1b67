//! The Vitale app's presence tokens already used: fsed accepts each token once (the API's
//! `replayed`), across restarts. A token is claimed when it has been verified, before its
//! sheet is made: a sheet that then fails leaves the token used (the app makes another).

use rusqlite::{params, OptionalExtension};

use crate::events::{event, stamp};
use crate::{PractitionerId, Queue, QueueError};

impl Queue {
    /// Records the token `digest` (hex SHA-256 of its body's DER) as used by `practitioner`, with its
    /// event row. `false` (nothing written) when it was used already.
    pub fn claim_app_token(
        &mut self,
        digest: &str,
        practitioner: &PractitionerId,
    ) -> Result<bool, QueueError> {
        let tx = self.write()?;
        let at = stamp();
        let n = tx
            .prepare_cached(
                "INSERT INTO app_tokens_used (digest, practitioner_id, used_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (digest) DO NOTHING",
            )?
            .execute(params![digest, practitioner.as_str(), at])?;
        if n == 0 {
            return Ok(false);
        }
        event(
            &tx,
            &at,
            "app_token.used",
            digest,
            serde_json::json!({ "practitioner_id": practitioner.as_str() }),
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Whether the token `digest` was used already, and when (`YYYY-MM-DDTHH:MM:SS…` as the
    /// event rows say).
    pub fn app_token_used(&self, digest: &str) -> Result<Option<String>, QueueError> {
        Ok(self
            .conn
            .prepare_cached("SELECT used_at FROM app_tokens_used WHERE digest = ?1")?
            .query_row(params![digest], |r| r.get(0))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::{PractitionerId, Queue};

    #[test]
    fn a_token_is_claimed_once_even_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let pid = PractitionerId::new("810001234567");
        let digest = "ab".repeat(32);
        {
            let mut q = Queue::open(&path).unwrap();
            assert!(q.app_token_used(&digest).unwrap().is_none());
            assert!(q.claim_app_token(&digest, &pid).unwrap());
            assert!(!q.claim_app_token(&digest, &pid).unwrap());
        }
        let mut q = Queue::open(&path).unwrap();
        assert!(q.app_token_used(&digest).unwrap().is_some());
        assert!(!q.claim_app_token(&digest, &pid).unwrap());
        assert!(q.claim_app_token(&"cd".repeat(32), &pid).unwrap());
    }
}
