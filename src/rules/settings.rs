//! A rule's settings (`<name>.toml` beside the module), as the guest reads them through
//! `hookline.config_get`. Read when the rule loads; immutable after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A settings file that cannot be read or parsed; the rule does not load.
#[derive(Debug, thiserror::Error)]
#[error("settings file {path}: {message}")]
pub struct SettingsError {
    pub path: PathBuf,
    pub message: String,
}

/// A rule's settings: the `<name>.toml` file beside `<name>.wasm` / `<name>.wat`,
/// flattened to dotted keys (`[alarm] battery = 20` is `alarm.battery`) with every value
/// as text (strings unquoted, numbers and booleans as written by TOML). The guest reads
/// them with `hookline.config_get`, so one module can serve with different topics or
/// thresholds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSettings(BTreeMap<String, String>);

impl RuleSettings {
    pub fn parse(text: &str) -> Result<RuleSettings, String> {
        fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) -> Result<(), String> {
            for (key, value) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                let text = match value {
                    toml::Value::Table(inner) => {
                        flatten(&path, inner, out)?;
                        continue;
                    }
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Datetime(d) => d.to_string(),
                    toml::Value::Array(_) => return Err(format!("`{path}`: arrays are not supported, use one key per value")),
                };
                out.insert(path, text);
            }
            Ok(())
        }
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
        let mut out = BTreeMap::new();
        flatten("", &table, &mut out)?;
        Ok(RuleSettings(out))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where the settings of the module at `module_path` live: same name, `.toml`.
    pub fn path_for(module_path: &Path) -> PathBuf {
        module_path.with_extension("toml")
    }

    /// Reads the settings beside a module, and returns them with the file's bytes; no
    /// file means no settings.
    pub fn read_for(module_path: &Path) -> Result<(RuleSettings, Vec<u8>), SettingsError> {
        let path = RuleSettings::path_for(module_path);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((RuleSettings::default(), Vec::new())),
            Err(e) => return Err(SettingsError { path, message: e.to_string() }),
        };
        let settings = std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(RuleSettings::parse)
            .map_err(|message| SettingsError { path, message })?;
        Ok((settings, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_flatten_tables_and_keep_values_as_text() {
        let settings = RuleSettings::parse("topic = \"alarm_state\"\n[alarm]\nbattery = 20\nratio = 0.5\nenabled = true\n").unwrap();
        assert_eq!(settings.get("topic"), Some("alarm_state"));
        assert_eq!(settings.get("alarm.battery"), Some("20"));
        assert_eq!(settings.get("alarm.ratio"), Some("0.5"));
        assert_eq!(settings.get("alarm.enabled"), Some("true"));
        assert_eq!(settings.get("missing"), None);
    }

    #[test]
    fn settings_errors_say_what_is_wrong() {
        assert!(RuleSettings::parse("a = [1, 2]").unwrap_err().contains("`a`"));
        assert!(RuleSettings::parse("a = ").is_err());
    }
}
