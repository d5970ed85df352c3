//! Flags shared by the four binaries: where the config is, and a Kafka override.

use std::path::PathBuf;

use crate::PlatformConfig;

#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// The platform config (locks, owners, secrets, thresholds).
    #[arg(long, env = "PLATFORM_CONFIG", default_value = "platform.toml")]
    pub config: PathBuf,
    /// Kafka bootstrap servers, overriding `kafka.bootstrap_servers`.
    #[arg(long, env = "PLATFORM_KAFKA")]
    pub kafka: Option<String>,
}

impl CommonArgs {
    pub fn load(&self) -> anyhow::Result<PlatformConfig> {
        let mut config = PlatformConfig::load(&self.config)?;
        if let Some(kafka) = &self.kafka {
            config.kafka.bootstrap_servers = kafka.clone();
        }
        Ok(config)
    }
}
