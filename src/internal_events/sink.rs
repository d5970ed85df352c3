//! What happens at the destinations: records refused for good, records sent again, a
//! destination away.

use std::fmt::Display;

use super::{InternalEvent, LogLimit};
use crate::metrics::{Metrics, Outcome, TopicSeries};

/// A destination refused a record for good: counted by topic, and its event committed.
pub struct RecordFailed<'a> {
    pub metrics: &'a Metrics,
    pub series: TopicSeries,
    pub error: &'a dyn Display,
}

impl InternalEvent for RecordFailed<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        let records = &self.metrics.records;
        records.add(self.series, Outcome::Failed, 1);
        if let Some(skipped) = LOG.allow() {
            let failed_total = records.total(Outcome::Failed);
            tracing::error!(error = %self.error, skipped, failed_total, "record delivery failed for good");
        }
    }
}

/// A destination did not take a record this time: its event is sent again. Not counted
/// here: the record counts once it is delivered or failed for good.
pub struct RecordResent<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for RecordResent<'_> {
    fn emit(self) {
        static LOG: LogLimit = LogLimit::new();
        if let Some(skipped) = LOG.allow() {
            tracing::warn!(error = %self.error, skipped, "record not delivered; its event is sent again");
        }
    }
}

/// A destination's connection is down or broke; records wait in the spool. Each
/// destination has its own `log`, so one destination away does not hide another.
pub struct DestinationAway<'a> {
    pub log: &'a LogLimit,
    pub destination: &'a str,
    /// Where it is, with no password in it.
    pub uri: &'a str,
    pub what: &'a str,
}

impl InternalEvent for DestinationAway<'_> {
    fn emit(self) {
        if let Some(skipped) = self.log.allow() {
            tracing::warn!(
                destination = self.destination,
                uri = self.uri,
                skipped,
                "{}; records wait in the spool and the gateway keeps trying",
                self.what
            );
        }
    }
}
