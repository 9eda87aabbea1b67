//! The checks of values that parse but cannot work: every problem found, each naming its key.

use super::sections::{
    CardBackend, TransportKind, MAX_ALARM_DAYS, MAX_ARL_RESENDS, MAX_ARL_TIMEOUT_SECS,
    MAX_LOT_AGE_SECS, MAX_LOT_SHEETS, MAX_SOCKET_PATH, SPOOL_RETURN_BYTES,
};
use super::{Config, ConfigError, ConfigErrors};

impl Config {
    /// Checks values that parse but cannot work: every problem, each with its key.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Every value that parses but cannot work, each with its key.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut out = Vec::new();
        if let Err(e) = self.api.validate() {
            out.push(e);
        }
        out.extend(self.network.problems());
        let mut bad = |key: &'static str, reason: String| {
            out.push(ConfigError::Invalid { key, reason });
        };
        self.path_problems(&mut bad);
        self.lot_problems(&mut bad);
        if self.retention.days < crate::retention::MIN_DAYS {
            bad(
                "retention.days",
                format!("at least {} days", crate::retention::MIN_DAYS),
            );
        }
        if !(1..=super::sections::MAX_ATTACHMENT_BYTES).contains(&self.attachments.max_bytes) {
            bad(
                "attachments.max_bytes",
                format!(
                    "between 1 and {} bytes",
                    super::sections::MAX_ATTACHMENT_BYTES
                ),
            );
        }
        if self.attachments.degraded_paper_days > 365 {
            bad("attachments.degraded_paper_days", "at most 365 days".into());
        }
        if self.cards.backend == CardBackend::Virtual && self.cards.virtual_slots.is_empty() {
            bad("cards.virtual_slots", "at least one slot is needed".into());
        }
        for (key, reason) in self.cards.bound_problems() {
            bad(key, reason);
        }
        self.transport_problems(&mut bad);
        for (key, reason) in self.remote.problems() {
            bad(key, reason);
        }
        for (key, reason) in self.paper.problems() {
            bad(key, reason);
        }
        for (key, reason) in self.app.problems() {
            bad(key, reason);
        }
        for (key, reason) in self.rights.problems() {
            bad(key, reason);
        }
        out
    }

    /// The state directory, database, socket and log level that cannot work.
    fn path_problems(&self, bad: &mut impl FnMut(&'static str, String)) {
        if self.state_dir.as_os_str().is_empty() {
            bad("state_dir", "must not be empty".into());
        }
        if self.database.as_os_str().is_empty() {
            bad("database", "must not be empty".into());
        }
        if self.socket.as_os_str().is_empty() {
            bad("socket", "must not be empty".into());
        } else if self.socket.as_os_str().len() > MAX_SOCKET_PATH {
            bad(
                "socket",
                format!("at most {MAX_SOCKET_PATH} bytes (a Unix socket path)"),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            bad(
                "log_level",
                format!("not a level or a list of directives: {e}"),
            );
        }
    }

    /// The `[lots]` values that cannot work.
    fn lot_problems(&self, bad: &mut impl FnMut(&'static str, String)) {
        if self.lots.max_sheets == 0 || self.lots.max_sheets > MAX_LOT_SHEETS {
            bad(
                "lots.max_sheets",
                format!("must be between 1 and {MAX_LOT_SHEETS}"),
            );
        }
        if !(1..=MAX_LOT_AGE_SECS).contains(&self.lots.max_age_secs) {
            bad(
                "lots.max_age_secs",
                format!("must be between 1 and {MAX_LOT_AGE_SECS} seconds (7 days)"),
            );
        }
        if self.lots.deadline_alarm_days > MAX_ALARM_DAYS {
            bad(
                "lots.deadline_alarm_days",
                format!("at most {MAX_ALARM_DAYS} working days"),
            );
        }
        if self.lots.close_at.is_some() && self.lots.close_time().is_none() {
            bad("lots.close_at", "a local time of day as HH:MM".into());
        }
    }

    /// The `[transport]` values that cannot work.
    fn transport_problems(&self, bad: &mut impl FnMut(&'static str, String)) {
        if !(1..=1024).contains(&self.transport.window) {
            bad("transport.window", "1 to 1024 lots".into());
        }
        if !(1..=600).contains(&self.transport.publish_timeout_secs) {
            bad("transport.publish_timeout_secs", "1 to 600 seconds".into());
        }
        if !SPOOL_RETURN_BYTES.contains(&self.transport.spool_max_return_bytes) {
            bad(
                "transport.spool_max_return_bytes",
                format!(
                    "{} to {} bytes",
                    SPOOL_RETURN_BYTES.start(),
                    SPOOL_RETURN_BYTES.end()
                ),
            );
        }
        if !(1..=MAX_ARL_TIMEOUT_SECS).contains(&self.transport.arl_timeout_secs) {
            bad(
                "transport.arl_timeout_secs",
                format!("1 to {MAX_ARL_TIMEOUT_SECS} seconds"),
            );
        }
        if self.transport.arl_max_resends > MAX_ARL_RESENDS {
            bad(
                "transport.arl_max_resends",
                format!("0 to {MAX_ARL_RESENDS} resends"),
            );
        }
        if self.transport.return_queue.is_empty() || self.transport.return_queue.len() > 255 {
            bad("transport.return_queue", "1 to 255 bytes".into());
        }
        if self.transport.kind == TransportKind::Amqp {
            let key = if self.transport.amqp_urls.is_empty() {
                "transport.amqp_url"
            } else {
                "transport.amqp_urls"
            };
            for (i, url) in self.transport.broker_urls().iter().enumerate() {
                let which = if key == "transport.amqp_urls" {
                    format!("address {}: ", i + 1)
                } else {
                    String::new()
                };
                if !url.starts_with("amqp") {
                    bad(key, format!("{which}must start with amqp:// or amqps://"));
                } else if url.parse::<lapin::uri::AMQPUri>().is_err() {
                    // The parser's own message quotes the URL, password included: not shown.
                    bad(
                        key,
                        format!(
                            "{which}not a broker URL (amqp[s]://user:password@host:port/vhost)"
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn values_are_checked() {
        // The keys that bound fsed's inputs, each named when out of range.
        for (key, set) in [
            (
                "transport.spool_max_return_bytes",
                (|c: &mut Config| c.transport.spool_max_return_bytes = 4095) as fn(&mut Config),
            ),
            ("transport.spool_max_return_bytes", |c| {
                c.transport.spool_max_return_bytes = (1 << 30) + 1
            }),
            ("api.max_connections_per_uid", |c| {
                c.api.max_connections_per_uid = 0
            }),
            ("api.idle_timeout_secs", |c| c.api.idle_timeout_secs = 0),
            ("api.idle_timeout_secs", |c| {
                c.api.idle_timeout_secs = 86_401
            }),
        ] {
            let mut cfg = Config::default();
            set(&mut cfg);
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{key}: {err}");
        }
        let mut cfg = Config::default();
        cfg.transport.spool_max_return_bytes = 4096;
        cfg.api.idle_timeout_secs = 86_400;
        assert!(cfg.validate().is_ok());
        let mut cfg = Config::default();
        cfg.lots.max_sheets = 0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("lots.max_sheets"));
        let mut cfg = Config::default();
        cfg.lots.close_at = Some("25:00".into());
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("lots.close_at"));
        cfg.lots.close_at = Some("18:30".into());
        assert!(cfg.validate().is_ok());
        cfg.retention.days = 30;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("retention.days"));
        let mut cfg = Config::default();
        cfg.transport.window = 0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("transport.window"));
        cfg.transport.window = 64;
        cfg.transport.publish_timeout_secs = 0;
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("transport.publish_timeout_secs"));
        cfg.transport.publish_timeout_secs = 10;
        cfg.transport.arl_timeout_secs = 0;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("transport.arl_timeout_secs: 1 to 604800"),
            "{e}"
        );
        // 7 days (7 × 86400 = 604800 s) is the longest; one more second is refused.
        cfg.transport.arl_timeout_secs = 604_800;
        assert!(cfg.validate().is_ok());
        cfg.transport.arl_timeout_secs = 604_801;
        assert!(cfg.validate().is_err());
        cfg.transport.arl_timeout_secs = 14_400;
        cfg.transport.arl_max_resends = 101;
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.starts_with("transport.arl_max_resends: 0 to 100"), "{e}");
        cfg.transport.arl_max_resends = 0;
        assert!(cfg.validate().is_ok(), "0: alarm only");
        let p = std::path::Path::new("/nonexistent/fsed.toml");
        assert!(Config::load(p, false).is_ok());
        assert!(Config::load(p, true).is_err());
    }
}
