//! The embedded default sink: appends one JSON line per record to
//! `<data>/records.jsonl`, so a newcomer sees exactly what Kafka would get.
//!
//! Line format: `{"topic":..,"key":..,"value":<the envelope>,"headers":{..}}`. The value
//! is the envelope JSON itself (not a string holding it: every value is an envelope the
//! host encoded); a key or header value that is not UTF-8 is written base64 under
//! `key_base64` / in `headers_base64`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use super::{Record, Sink, SinkError};
use crate::metrics::{Metrics, Outcome, TopicSeries};
use crate::spool::Ticket;

pub const RECORDS_FILE: &str = "records.jsonl";

pub struct FileSink {
    path: PathBuf,
    writer: Mutex<Writer>,
    metrics: Arc<Metrics>,
}

struct Writer {
    out: BufWriter<File>,
    /// Records written into the buffer but not yet flushed to the file: their topic's
    /// series and event time, counted once the flush confirms them.
    unflushed: Vec<(TopicSeries, u64)>,
}

impl FileSink {
    pub fn open(data_dir: &Path, metrics: Arc<Metrics>) -> Result<FileSink, SinkError> {
        let path = data_dir.join(RECORDS_FILE);
        let error = |source| SinkError::File { path: path.clone(), source };
        std::fs::create_dir_all(data_dir).map_err(error)?;
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(error)?;
        Ok(FileSink {
            writer: Mutex::new(Writer { out: BufWriter::with_capacity(256 * 1024, file), unflushed: Vec::new() }),
            path,
            metrics,
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io_error(&self, source: std::io::Error) -> SinkError {
        SinkError::File { path: self.path.clone(), source }
    }
}

/// One record as a JSON line, built without a JSON tree.
fn encode_line(record: &Record<'_>, line: &mut Vec<u8>) {
    let b64 = base64::engine::general_purpose::STANDARD;
    line.extend_from_slice(b"{\"topic\":");
    serde_json::to_writer(&mut *line, record.topic).expect("write to Vec");
    match std::str::from_utf8(record.key) {
        Ok(key) => {
            line.extend_from_slice(b",\"key\":");
            serde_json::to_writer(&mut *line, key).expect("write to Vec");
        }
        Err(_) => {
            line.extend_from_slice(b",\"key_base64\":");
            serde_json::to_writer(&mut *line, &b64.encode(record.key)).expect("write to Vec");
        }
    }
    // Values are envelopes, JSON written by `envelope::encode`: embedded as they are.
    line.extend_from_slice(b",\"value\":");
    line.extend_from_slice(record.value);
    if !record.headers.is_empty() {
        let mut text = serde_json::Map::new();
        let mut binary = serde_json::Map::new();
        for (name, value) in record.headers {
            match std::str::from_utf8(value) {
                Ok(v) => text.insert(name.clone(), v.into()),
                Err(_) => binary.insert(name.clone(), b64.encode(value).into()),
            };
        }
        line.extend_from_slice(b",\"headers\":");
        serde_json::to_writer(&mut *line, &text).expect("write to Vec");
        if !binary.is_empty() {
            line.extend_from_slice(b",\"headers_base64\":");
            serde_json::to_writer(&mut *line, &binary).expect("write to Vec");
        }
    }
    line.extend_from_slice(b"}\n");
}

impl Sink for FileSink {
    /// Delivery is the flush in `end_batch`, so tickets are not needed.
    fn send(&self, record: Record<'_>, _: &Arc<Ticket>) -> Result<(), SinkError> {
        let mut line = Vec::with_capacity(record.value.len() + record.topic.len() + 64);
        encode_line(&record, &mut line);
        Metrics::add(&self.metrics.records_sent, 1);
        let series = self.metrics.records.series(record.topic);
        let mut writer = self.writer();
        if let Err(e) = writer.out.write_all(&line) {
            self.metrics.records.add(series, Outcome::Failed, 1);
            return Err(self.io_error(e));
        }
        writer.unflushed.push((series, record.event_ms));
        Ok(())
    }

    fn end_batch(&self) -> Result<(), SinkError> {
        let mut writer = self.writer();
        let flushed = writer.out.flush();
        for (series, event_ms) in writer.unflushed.drain(..) {
            match flushed {
                Ok(()) => self.metrics.record_delivered(series, event_ms),
                Err(_) => self.metrics.records.add(series, Outcome::Failed, 1),
            }
        }
        flushed.map_err(|e| self.io_error(e))
    }

    fn flush(&self, _timeout: Duration) -> Result<(), SinkError> {
        self.end_batch()
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_embeds_the_envelope_and_marks_binary_keys() {
        let headers = vec![("h".to_string(), b"v".to_vec()), ("bin".to_string(), vec![0xff])];
        let record = Record { topic: "t", key: &[0xff, 0x00], value: br#"{"a":1}"#, headers: &headers, event_ms: 0 };
        let mut line = Vec::new();
        encode_line(&record, &mut line);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["topic"], "t");
        assert_eq!(v["key_base64"], "/wA=");
        assert_eq!(v["value"]["a"], 1);
        assert_eq!(v["headers"]["h"], "v");
        assert_eq!(v["headers_base64"]["bin"], "/w==");
    }
}
