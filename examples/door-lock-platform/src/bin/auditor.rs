//! auditor: reads `message_command` and `message_state` together in consumer group
//! `auditor.group_id` and writes one audit line per acknowledged command (sender,
//! acknowledgement, signature, findings) and per state report that follows one, to the
//! `audit` topic (keyed by lock id) and appended to `auditor.audit_file`.

use std::fs::File;
use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser;
use hookline_platform::auditor::{AuditLine, Auditor};
use hookline_platform::cli::CommonArgs;
use hookline_platform::envelope::{decode, Command, StateReport};
use hookline_platform::kafka::{self, RecordHandler};
use hookline_platform::PlatformConfig;
use rdkafka::producer::FutureProducer;
use tracing::{info, warn};

#[derive(Parser)]
#[command(about = "Door-lock auditor: message_command + message_state -> audit topic and file")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

struct AuditorService {
    config: PlatformConfig,
    auditor: Auditor,
    producer: FutureProducer,
    file: File,
}

impl AuditorService {
    /// Appends the line to the file, then writes it to Kafka; both before the record's
    /// offset is stored.
    async fn write(&mut self, line: AuditLine) -> anyhow::Result<()> {
        let value = serde_json::to_string(&line)?;
        if matches!(&line, AuditLine::Command { findings, .. } if !findings.is_empty()) {
            warn!(audit = %value, "suspicious command");
        } else {
            info!(audit = %value, "audit");
        }
        let path = self.config.auditor.audit_file.display();
        // One write per whole line: a reader (or a crash) never sees half a line.
        let mut record = value.clone().into_bytes();
        record.push(b'\n');
        self.file.write_all(&record).with_context(|| format!("cannot append to audit file {path}"))?;
        kafka::produce(&self.producer, &self.config.kafka.audit_topic, line.lock_id(), &value).await
    }
}

impl RecordHandler for AuditorService {
    async fn record(&mut self, topic: &str, value: &[u8]) -> anyhow::Result<()> {
        if topic == self.config.kafka.command_topic {
            if let Some((envelope, command)) = decode::<Command>(value) {
                let line = self.auditor.on_command(&envelope, &command);
                self.write(line).await?;
            }
        } else if let Some((envelope, report)) = decode::<StateReport>(value) {
            if let Some(line) = self.auditor.on_state(&envelope, &report) {
                self.write(line).await?;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookline_platform::init_logging();
    let config = Args::parse().common.load()?;
    let path = &config.auditor.audit_file;
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open audit file {} (auditor.audit_file)", path.display()))?;
    let topics = [config.kafka.command_topic.as_str(), config.kafka.state_topic.as_str()];
    let consumer = kafka::consumer(&config.kafka, &config.auditor.group_id, &topics)?;
    let secrets = config.locks.iter().map(|(id, lock)| (id.clone(), lock.secret.clone())).collect();
    let auditor = Auditor::new(secrets, config.auditor.ts_window_secs);
    info!(file = %path.display(), "auditing");
    let mut service = AuditorService { auditor, producer: kafka::producer(&config.kafka)?, file, config };
    kafka::run(consumer, &mut service).await
}
