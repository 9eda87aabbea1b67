//! The catalogue of keys: every dotted key, how its environment variable is written, and
//! whether a reload applies it at once.

/// How a key's value is written in an environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text or a path, as is.
    Text,
    /// A whole number.
    Number,
    /// `true` or `false` (also `1` or `0`).
    Bool,
    /// A list, comma-separated (`127.0.0.1:35963,127.0.0.1:35964`).
    List,
}

/// A key of the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Dotted path (`lots.max_sheets`): the TOML key under its section.
    pub path: &'static str,
    /// How its environment variable is read.
    pub kind: Kind,
    /// Whether a SIGHUP applies a new value to the running service (else it needs a restart).
    pub live: bool,
}

/// Every key, in the order of `daemon/CONFIG.md`.
pub const KEYS: &[Key] = &[
    key("state_dir", Kind::Text, false),
    key("socket", Kind::Text, false),
    key("database", Kind::Text, false),
    key("trust_dir", Kind::Text, false),
    key("log_level", Kind::Text, true),
    key("cards.backend", Kind::Text, false),
    key("cards.virtual_slots", Kind::List, false),
    key("cards.max_wait_ms", Kind::Number, false),
    key("cards.max_lease_secs", Kind::Number, false),
    key("cards.session_max_lots", Kind::Number, false),
    key("cards.session_max_hours", Kind::Number, false),
    key("transport.kind", Kind::Text, false),
    key("transport.spool_outbox", Kind::Text, false),
    key("transport.spool_inbox", Kind::Text, false),
    key("transport.amqp_url", Kind::Text, false),
    key("transport.amqp_urls", Kind::List, false),
    key("transport.return_queue", Kind::Text, false),
    key("transport.window", Kind::Number, true),
    key("transport.publish_timeout_secs", Kind::Number, false),
    key("transport.spool_max_return_bytes", Kind::Number, false),
    key("transport.arl_timeout_secs", Kind::Number, true),
    key("transport.arl_max_resends", Kind::Number, true),
    key("lots.max_sheets", Kind::Number, true),
    key("lots.max_age_secs", Kind::Number, true),
    key("lots.deadline_alarm_days", Kind::Number, true),
    key("lots.close_at", Kind::Text, true),
    key("retention.days", Kind::Number, false),
    key("retention.archive_dir", Kind::Text, false),
    key("attachments.max_bytes", Kind::Number, false),
    key("attachments.degraded_paper_days", Kind::Number, false),
    key("api.max_connections", Kind::Number, false),
    key("api.max_queued_replies", Kind::Number, false),
    key("api.max_connections_per_uid", Kind::Number, false),
    key("api.idle_timeout_secs", Kind::Number, false),
    key("api.allowed_users", Kind::List, false),
    key("api.allowed_groups", Kind::List, false),
    key("network.listen", Kind::Text, false),
    key("network.enroll_listen", Kind::Text, false),
    key("network.dir", Kind::Text, false),
    key("network.certificate_days", Kind::Number, false),
    key("network.server_names", Kind::List, false),
    key("network.workstations", Kind::Text, false),
    key("remote.identity_dir", Kind::Text, false),
    key("remote.timeout_ms", Kind::Number, false),
    key("paper.dir", Kind::Text, false),
    key("paper.auto", Kind::Bool, false),
    key("paper.days_before", Kind::Number, false),
    key("paper.check_secs", Kind::Number, false),
    key("app.challenge_ttl_secs", Kind::Number, false),
    key("app.max_token_lifetime_secs", Kind::Number, false),
    key("rights.enabled", Kind::Bool, false),
    key("rights.max_card_age_days", Kind::Number, false),
    key("rights.max_answer_age_secs", Kind::Number, false),
    key("rights.timeout_ms", Kind::Number, false),
    key("rights.offline", Kind::Text, false),
];

const fn key(path: &'static str, kind: Kind, live: bool) -> Key {
    Key { path, kind, live }
}

/// Older environment variables still read, each with the key it sets; the key's own
/// variable wins when both are set.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("FSED_AMQP_URL", "transport.amqp_url"),
    ("FSED_LOG", "log_level"),
];

/// The environment variable of a key: `FSED_` and the key in capitals, dots as underscores.
pub fn env_var(path: &str) -> String {
    format!("FSED_{}", path.replace('.', "_").to_ascii_uppercase())
}

/// The key of that dotted path, if there is one.
pub fn find_key(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn every_key_is_real_and_documented() {
        let doc = include_str!("../../CONFIG.md");
        let mut cfg = Config {
            trust_dir: Some("/t".into()),
            ..Config::default()
        };
        cfg.lots.close_at = Some("18:00".into());
        cfg.api.allowed_users = Some(vec!["root".into()]);
        cfg.api.allowed_groups = Some(vec!["root".into()]);
        cfg.network.listen = Some("127.0.0.1:7443".parse().unwrap());
        cfg.network.enroll_listen = Some("127.0.0.1:7444".parse().unwrap());
        cfg.remote.identity_dir = Some("/i".into());
        cfg.paper.dir = Some("/p".into());
        let flat = cfg.flat();
        let keys: Vec<&str> = KEYS.iter().map(|k| k.path).collect();
        assert_eq!(
            flat.keys().map(String::as_str).collect::<Vec<_>>().len(),
            keys.len()
        );
        for k in flat.keys() {
            assert!(keys.contains(&k.as_str()), "{k} missing from KEYS");
        }
        for k in KEYS {
            assert!(
                doc.contains(&format!("`{}`", k.path)),
                "{} not in CONFIG.md",
                k.path
            );
            assert!(
                doc.contains(&format!("`{}`", env_var(k.path))),
                "{} not in CONFIG.md",
                env_var(k.path)
            );
        }
    }
}
