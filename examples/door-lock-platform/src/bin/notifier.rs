//! notifier: reads `message_state` in consumer group `notifier.group_id` and tells a
//! lock's owner, through the configured channel, each time the lock reports an unlock.

use clap::Parser;
use hookline_platform::channel::{AnyChannel, Channel as _};
use hookline_platform::cli::CommonArgs;
use hookline_platform::envelope::{decode, StateReport};
use hookline_platform::kafka::{self, RecordHandler};
use hookline_platform::notifier::unlock_notification;
use hookline_platform::PlatformConfig;
use tracing::warn;

#[derive(Parser)]
#[command(about = "Door-lock notifier: unlock reports on message_state -> owner notifications")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

struct Notifier {
    config: PlatformConfig,
    channel: AnyChannel,
}

impl RecordHandler for Notifier {
    async fn record(&mut self, _topic: &str, value: &[u8]) -> anyhow::Result<()> {
        let Some((envelope, report)) = decode::<StateReport>(value) else {
            return Ok(());
        };
        let Some(lock) = self.config.locks.get(&envelope.client_id) else {
            warn!(lock_id = %envelope.client_id, "no owner on file for this lock; add [locks.\"<id>\"] to the config");
            return Ok(());
        };
        if let Some(notification) = unlock_notification(&envelope.client_id, lock, &report, envelope.ts) {
            self.channel.send(&notification).await?;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookline_platform::init_logging();
    let config = Args::parse().common.load()?;
    let consumer = kafka::consumer(&config.kafka, &config.notifier.group_id, &[&config.kafka.state_topic])?;
    let channel = AnyChannel::from_config(&config.channel)?;
    kafka::run(consumer, &mut Notifier { config, channel }).await
}
