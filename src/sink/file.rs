//! The embedded default sink: appends one JSON line per record to
//! `<data>/records.jsonl`, so a newcomer sees exactly what Kafka would get.
//!
//! Line format: `{"topic":..,"key":..,"value":<the envelope>,"headers":{..}}`. The value
//! is the envelope JSON itself (not a string holding it); a value a rule chose instead
//! (`route_value`) is `value_text`, or `value_base64` when not UTF-8; a key or header
//! value that is not UTF-8 is written base64 under `key_base64` / in `headers_base64`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;

use super::{Delivery, DestinationCheck, Record, Sink, SinkError};

pub const RECORDS_FILE: &str = "records.jsonl";

pub struct FileSink {
    path: PathBuf,
    writer: Mutex<Writer>,
}

struct Writer {
    out: BufWriter<File>,
    /// Records written into the buffer but not yet flushed to the file, resolved by
    /// the flush.
    unflushed: Vec<Delivery>,
}

impl FileSink {
    pub fn open(data_dir: &Path) -> std::io::Result<FileSink> {
        let path = data_dir.join(RECORDS_FILE);
        std::fs::create_dir_all(data_dir)?;
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(FileSink { writer: Mutex::new(Writer { out: BufWriter::with_capacity(256 * 1024, file), unflushed: Vec::new() }), path })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A failed write of the file: the disk may have room again later.
    fn io_error(&self, source: std::io::Error) -> SinkError {
        SinkError::retriable(format!("cannot write records to {}: {source}", self.path.display()))
    }

    /// Writes the buffer out and resolves the records it held.
    fn flush_buffer(&self) -> Result<(), SinkError> {
        let mut writer = self.writer();
        let flushed = writer.out.flush().map_err(|e| self.io_error(e));
        for delivery in writer.unflushed.drain(..) {
            match &flushed {
                Ok(()) => delivery.delivered(),
                Err(error) => delivery.failed(error),
            }
        }
        flushed
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
    // Envelopes are JSON written by `envelope::encode`: embedded as they are. Other
    // values (a rule's `route_value`) go in as text, or base64 when not UTF-8.
    match (record.envelope, std::str::from_utf8(record.value)) {
        (true, _) => {
            line.extend_from_slice(b",\"value\":");
            line.extend_from_slice(record.value);
        }
        (false, Ok(text)) => {
            line.extend_from_slice(b",\"value_text\":");
            serde_json::to_writer(&mut *line, text).expect("write to Vec");
        }
        (false, Err(_)) => {
            line.extend_from_slice(b",\"value_base64\":");
            serde_json::to_writer(&mut *line, &b64.encode(record.value)).expect("write to Vec");
        }
    }
    if !record.headers.is_empty() {
        // Written directly (no JSON tree): every record carries the gateway's headers.
        let text = |v: &[u8]| std::str::from_utf8(v).is_ok();
        header_object(line, "headers", record.headers.iter().filter(|(_, v)| text(v)), |line, v| {
            serde_json::to_writer(&mut *line, std::str::from_utf8(v).expect("filtered to UTF-8")).expect("write to Vec")
        });
        if record.headers.iter().any(|(_, v)| !text(v)) {
            header_object(line, "headers_base64", record.headers.iter().filter(|(_, v)| !text(v)), |line, v| {
                serde_json::to_writer(&mut *line, &b64.encode(v)).expect("write to Vec")
            });
        }
    }
    line.extend_from_slice(b"}\n");
}

/// `,"field":{"name":value,...}` with each value written by `value`.
fn header_object<'a>(
    line: &mut Vec<u8>,
    field: &str,
    headers: impl Iterator<Item = &'a (&'a str, &'a [u8])>,
    value: impl Fn(&mut Vec<u8>, &[u8]),
) {
    line.extend_from_slice(b",\"");
    line.extend_from_slice(field.as_bytes());
    line.extend_from_slice(b"\":{");
    for (i, (name, bytes)) in headers.enumerate() {
        if i > 0 {
            line.push(b',');
        }
        serde_json::to_writer(&mut *line, name).expect("write to Vec");
        line.push(b':');
        value(line, bytes);
    }
    line.push(b'}');
}

impl Sink for FileSink {
    /// Buffered; delivered by the flush at the end of the worker's batch.
    fn send(&self, record: Record<'_>, delivery: Delivery) {
        let mut line = Vec::with_capacity(record.value.len() + record.topic.len() + 64);
        encode_line(&record, &mut line);
        let mut writer = self.writer();
        match writer.out.write_all(&line) {
            Ok(()) => writer.unflushed.push(delivery),
            Err(e) => delivery.failed(&self.io_error(e)),
        }
    }

    fn end_batch(&self) {
        // A failure resolves the batch's records as not delivered: the worker sends
        // their events again.
        let _ = self.flush_buffer();
    }

    fn flush(&self, _timeout: Duration) -> Result<(), SinkError> {
        self.flush_buffer()
    }

    /// The same names as Kafka, so a rule that works here works against Kafka.
    fn destination_check(&self) -> DestinationCheck {
        crate::names::check_kafka_topic
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
        let headers = [("h", &b"v"[..]), ("bin", &[0xff][..])];
        let record = Record { topic: "t", key: &[0xff, 0x00], value: br#"{"a":1}"#, headers: &headers, envelope: true };
        let mut line = Vec::new();
        encode_line(&record, &mut line);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["topic"], "t");
        assert_eq!(v["key_base64"], "/wA=");
        assert_eq!(v["value"]["a"], 1);
        assert_eq!(v["headers"]["h"], "v");
        assert_eq!(v["headers_base64"]["bin"], "/w==");
    }

    #[test]
    fn a_value_a_rule_chose_is_text_or_base64() {
        for (value, field, shown) in [(&b"{\"raw\":1"[..], "value_text", "{\"raw\":1"), (&[0xff, 0x01][..], "value_base64", "/wE=")] {
            let record = Record { topic: "t", key: b"k", value, headers: &[], envelope: false };
            let mut line = Vec::new();
            encode_line(&record, &mut line);
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v[field], shown);
        }
    }
}
