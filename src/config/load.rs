//! Reading the configuration: a TOML file or text into the raw `Config`, each error one
//! line that names its key.

use std::path::Path;

use super::{Config, ConfigError};

impl Config {
    /// Reads a TOML file; missing keys take their defaults, unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    /// Parses TOML text; the error is a single line naming the offending key.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        let one_line = |e: &toml::de::Error| {
            e.message().replace('\n', " ").trim().to_string() + &e.span().map(|s| format!(" (at byte {})", s.start)).unwrap_or_default()
        };
        let deserializer = toml::Deserializer::parse(text).map_err(|e| one_line(&e))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| match e.path().to_string().as_str() {
            "." => one_line(e.inner()),
            key => format!("`{key}`: {}", one_line(e.inner())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Destination;
    use super::*;

    #[test]
    fn example_config_parses_and_validates() {
        let text = include_str!("../../examples/hookline.toml");
        let config = Config::from_toml(text).expect("example config parses").validate().expect("example config is valid");
        assert_eq!(config.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(config.broker.listen.port(), 1883);
        assert_eq!(config.destinations(), [Destination::Kafka]);
    }

    /// Every key, dotted (`broker.listen`), from the defaults.
    fn all_keys() -> Vec<String> {
        fn walk(prefix: &str, value: &toml::Value, keys: &mut Vec<String>) {
            if let toml::Value::Table(table) = value {
                for (key, value) in table {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    match value {
                        toml::Value::Table(_) if key != "properties" => walk(&path, value, keys),
                        _ => keys.push(path),
                    }
                }
            }
        }
        let mut keys = Vec::new();
        walk("", &toml::Value::try_from(Config::default()).unwrap(), &mut keys);
        keys
    }

    #[test]
    fn docs_document_every_config_key() {
        let doc = include_str!("../../docs/configuration.md");
        for key in all_keys() {
            assert!(doc.contains(&format!("| `{key}` |")), "docs/configuration.md's config reference lacks `{key}`");
        }
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = Config::from_toml("[broker]\nlisten_addr = \"0.0.0.0:1\"\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn bad_compression_names_the_key() {
        let err = Config::from_toml("[kafka]\ncompression = \"brotli\"\n").unwrap_err();
        assert!(err.contains("kafka.compression"), "{err}");
        assert!(err.contains("zstd"), "the error lists the codecs: {err}");
    }

    #[test]
    fn compression_reaches_librdkafka_by_its_name() {
        let config = Config::from_toml("[kafka]\ncompression = \"zstd\"\n").unwrap();
        assert_eq!(config.kafka.compression.as_str(), "zstd");
        assert_eq!(Config::default().kafka.compression.as_str(), "lz4");
    }
}
