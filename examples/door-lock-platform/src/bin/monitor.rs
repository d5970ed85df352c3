//! monitor: reads `message_state` in consumer group `monitor.group_id`; low battery,
//! an abnormal `lock_state` or a silent lock raises one record on the `alarms` topic
//! (keyed by lock id) and one notification, and one of each again when it clears.

use clap::Parser;
use hookline_platform::channel::{AnyChannel, Channel as _};
use hookline_platform::cli::CommonArgs;
use hookline_platform::envelope::{decode, StateReport};
use hookline_platform::kafka::{self, RecordHandler};
use hookline_platform::monitor::{Alarm, Monitor};
use hookline_platform::PlatformConfig;
use rdkafka::producer::FutureProducer;
use tracing::{info, warn};

#[derive(Parser)]
#[command(about = "Door-lock monitor: message_state -> alarms topic and owner notifications")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

struct MonitorService {
    config: PlatformConfig,
    monitor: Monitor,
    producer: FutureProducer,
    channel: AnyChannel,
}

impl MonitorService {
    /// Writes each alarm to Kafka, then notifies the owner.
    async fn publish(&self, alarms: Vec<Alarm>) -> anyhow::Result<()> {
        for alarm in alarms {
            let value = serde_json::to_string(&alarm)?;
            info!(alarm = %value, "alarm");
            kafka::produce(&self.producer, &self.config.kafka.alarms_topic, &alarm.lock_id, &value).await?;
            match self.config.locks.get(&alarm.lock_id) {
                Some(lock) => self.channel.send(&alarm.notification(lock)).await?,
                None => warn!(lock_id = %alarm.lock_id, "no owner on file to notify; add [locks.\"<id>\"] to the config"),
            }
        }
        Ok(())
    }
}

impl RecordHandler for MonitorService {
    async fn record(&mut self, _topic: &str, value: &[u8]) -> anyhow::Result<()> {
        let Some((envelope, report)) = decode::<StateReport>(value) else {
            return Ok(());
        };
        let alarms = self.monitor.on_state(&envelope.client_id, &report, envelope.ts);
        self.publish(alarms).await
    }

    async fn tick(&mut self, idle: bool) -> anyhow::Result<()> {
        let alarms = self.monitor.on_tick(hookline_platform::now_ms(), idle);
        self.publish(alarms).await
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookline_platform::init_logging();
    let config = Args::parse().common.load()?;
    let consumer = kafka::consumer(&config.kafka, &config.monitor.group_id, &[&config.kafka.state_topic])?;
    let mut service = MonitorService {
        monitor: Monitor::new(&config.monitor),
        producer: kafka::producer(&config.kafka)?,
        channel: AnyChannel::from_config(&config.channel)?,
        config,
    };
    kafka::run(consumer, &mut service).await
}
