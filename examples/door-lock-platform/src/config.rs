//! `platform.toml`: the one config file of the notifier, the monitor, the auditor and
//! the simulator. Every key is optional except the `[locks.<id>]` entries a deployment
//! needs; `examples/door-lock-platform/platform.toml` lists every key (a test parses it,
//! and another checks that its README's table names each one).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the platform binaries read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    /// Kafka connection and topic names, shared by the three consumers.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Where notifications to owners go (notifier and monitor).
    #[serde(default)]
    pub channel: ChannelConfig,
    /// The notifier's own settings.
    #[serde(default)]
    pub notifier: NotifierConfig,
    /// The monitor's own settings.
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// The auditor's own settings.
    #[serde(default)]
    pub auditor: AuditorConfig,
    /// Known locks by lock id (the MQTT client id): owner contact and signing secret.
    #[serde(default)]
    pub locks: BTreeMap<String, LockConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers (`--kafka` overrides it).
    #[serde(default = "default_bootstrap_servers")]
    pub bootstrap_servers: String,
    /// Topic of the locks' state reports, written by the gateway.
    #[serde(default = "default_state_topic")]
    pub state_topic: String,
    /// Topic of acknowledged commands, written by the gateway.
    #[serde(default = "default_command_topic")]
    pub command_topic: String,
    /// Topic the monitor writes alarms to.
    #[serde(default = "default_alarms_topic")]
    pub alarms_topic: String,
    /// Topic the auditor writes audit lines to.
    #[serde(default = "default_audit_topic")]
    pub audit_topic: String,
    /// librdkafka properties passed through as is (TLS, SASL, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: default_bootstrap_servers(),
            state_topic: default_state_topic(),
            command_topic: default_command_topic(),
            alarms_topic: default_alarms_topic(),
            audit_topic: default_audit_topic(),
            properties: BTreeMap::new(),
        }
    }
}

/// Which notification channel is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// One log line per notification (stderr).
    #[default]
    Log,
    /// An HTTP POST of the notification as JSON to `channel.webhook_url`.
    Webhook,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// `log` or `webhook`.
    #[serde(default)]
    pub kind: ChannelKind,
    /// `http://host:port/path` the webhook channel POSTs to (plain HTTP/1.1).
    #[serde(default)]
    pub webhook_url: String,
    /// Attempts per notification before the consumer stops with an error (its offset
    /// is then not committed, so a restart sends it again).
    #[serde(default = "default_webhook_attempts")]
    pub webhook_attempts: u32,
    /// Wait before the first retry, in ms; doubled after each failure, capped at 30 s.
    #[serde(default = "default_webhook_backoff_ms")]
    pub webhook_backoff_ms: u64,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            kind: ChannelKind::Log,
            webhook_url: String::new(),
            webhook_attempts: default_webhook_attempts(),
            webhook_backoff_ms: default_webhook_backoff_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Kafka consumer group of the notifier.
    #[serde(default = "default_notifier_group")]
    pub group_id: String,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig { group_id: default_notifier_group() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Kafka consumer group of the monitor.
    #[serde(default = "default_monitor_group")]
    pub group_id: String,
    /// A reported battery below this percentage raises `low_battery`.
    #[serde(default = "default_battery_threshold")]
    pub battery_threshold: f64,
    /// How often a lock reports its state when nothing changes, in seconds.
    #[serde(default = "default_report_interval_secs")]
    pub report_interval_secs: u64,
    /// A lock silent for more than this many reporting intervals raises `silent`.
    #[serde(default = "default_silent_intervals")]
    pub silent_intervals: u32,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            group_id: default_monitor_group(),
            battery_threshold: default_battery_threshold(),
            report_interval_secs: default_report_interval_secs(),
            silent_intervals: default_silent_intervals(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditorConfig {
    /// Kafka consumer group of the auditor.
    #[serde(default = "default_auditor_group")]
    pub group_id: String,
    /// Local file the audit lines are appended to (JSON lines), besides the `audit` topic.
    #[serde(default = "default_audit_file")]
    pub audit_file: PathBuf,
    /// A command whose `ts` differs from the moment the lock acknowledged it by more
    /// than this many seconds is `stale`.
    #[serde(default = "default_ts_window_secs")]
    pub ts_window_secs: u64,
}

impl Default for AuditorConfig {
    fn default() -> Self {
        AuditorConfig { group_id: default_auditor_group(), audit_file: default_audit_file(), ts_window_secs: default_ts_window_secs() }
    }
}

/// One lock's entry, keyed by lock id.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockConfig {
    /// Owner's name, used in notifications.
    pub owner: String,
    /// Where the owner is reached (e-mail address or phone number), passed to the channel.
    pub contact: String,
    /// Per-lock secret of the command signature (see its README, "Command signing").
    pub secret: String,
}

fn default_bootstrap_servers() -> String {
    "127.0.0.1:9092".into()
}
fn default_state_topic() -> String {
    "message_state".into()
}
fn default_command_topic() -> String {
    "message_command".into()
}
fn default_alarms_topic() -> String {
    "alarms".into()
}
fn default_audit_topic() -> String {
    "audit".into()
}
const fn default_webhook_attempts() -> u32 {
    8
}
const fn default_webhook_backoff_ms() -> u64 {
    200
}
fn default_notifier_group() -> String {
    "notifier".into()
}
fn default_monitor_group() -> String {
    "monitor".into()
}
const fn default_battery_threshold() -> f64 {
    20.0
}
const fn default_report_interval_secs() -> u64 {
    60
}
const fn default_silent_intervals() -> u32 {
    3
}
fn default_auditor_group() -> String {
    "auditor".into()
}
fn default_audit_file() -> PathBuf {
    "audit.jsonl".into()
}
const fn default_ts_window_secs() -> u64 {
    300
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source} (give an existing file with --config)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is invalid: {source}(see examples/door-lock-platform/platform.toml for every key)")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("config file {path}: channel.kind = \"webhook\" needs channel.webhook_url (http://host:port/path)")]
    WebhookWithoutUrl { path: PathBuf },
}

impl PlatformConfig {
    pub fn load(path: &Path) -> Result<PlatformConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let config: PlatformConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        if config.channel.kind == ChannelKind::Webhook && config.channel.webhook_url.is_empty() {
            return Err(ConfigError::WebhookWithoutUrl { path: path.into() });
        }
        Ok(config)
    }

    /// The signing secret of `lock_id`, if the lock is known.
    pub fn secret(&self, lock_id: &str) -> Option<&str> {
        self.locks.get(lock_id).map(|lock| lock.secret.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../platform.toml");

    /// Dotted keys of a TOML table; the entries of `locks` are written `locks.<id>.key`.
    fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(table) = value {
            for (key, child) in table {
                let path = if prefix == "locks" {
                    format!("{prefix}.<id>")
                } else if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match child {
                    toml::Value::Table(_) if path != "kafka.properties" => keys(child, &path, out),
                    _ => out.push(path),
                }
            }
        }
    }

    /// Every key the config struct has, from its defaults plus one lock entry.
    fn every_key() -> Vec<String> {
        let mut with_lock = PlatformConfig::default();
        with_lock.locks.insert("1".into(), LockConfig { owner: "o".into(), contact: "c".into(), secret: "s".into() });
        let mut all = Vec::new();
        keys(&toml::Value::try_from(&with_lock).unwrap(), "", &mut all);
        all
    }

    #[test]
    fn example_config_parses_and_sets_every_key() {
        let example: PlatformConfig = toml::from_str(EXAMPLE).expect("platform.toml parses");
        assert_eq!(example.locks.len(), 4);
        let mut listed = Vec::new();
        keys(&toml::from_str(EXAMPLE).unwrap(), "", &mut listed);
        for key in every_key() {
            assert!(listed.contains(&key), "platform.toml lacks `{key}`");
        }
    }

    #[test]
    fn readme_documents_every_config_key() {
        let readme = include_str!("../README.md");
        // Only the platform's table: the gateway's has keys of the same names.
        let start = readme.find("### Platform config reference").expect("README has the platform config table");
        let table = &readme[start..start + readme[start..].find("\n### ").unwrap_or(readme.len() - start)];
        for key in every_key() {
            assert!(table.contains(&format!("| `{key}` |")), "README platform config table lacks `{key}`");
        }
    }

    #[test]
    fn webhook_channel_without_url_is_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, "[channel]\nkind = \"webhook\"\n").unwrap();
        let err = PlatformConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("channel.webhook_url"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused() {
        let err = toml::from_str::<PlatformConfig>("[monitor]\nbattery = 3\n").unwrap_err().to_string();
        assert!(err.contains("battery"), "{err}");
    }
}
