//! Retained messages (MQTT): the last retained message of each topic, encoded as a
//! mailbox message (`broker::mail_message`), kept by the edge rather than rumqttd's router. The
//! router sends retained messages only to a filter new to the connection and drops
//! them on any empty publish, retained or not; MQTT wants them on every SUBSCRIBE with
//! Retain Handling 0, and removed only by an empty retained publish. A gateway alone
//! keeps them in memory; a cluster keeps them in its retained topic and every node
//! reads them into one of these.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;

#[derive(Default)]
pub struct Retained(Mutex<BTreeMap<String, Bytes>>);

impl Retained {
    fn messages(&self) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `message` as `topic`'s retained message; `None` removes it.
    pub fn set(&self, topic: &str, message: Option<Bytes>) {
        let mut messages = self.messages();
        match message {
            Some(message) => messages.insert(topic.to_string(), message),
            None => messages.remove(topic),
        };
    }

    /// The retained messages whose topic `matches`.
    pub fn matching(&self, matches: impl Fn(&[u8]) -> bool) -> Vec<Bytes> {
        self.messages().iter().filter(|(topic, _)| matches(topic.as_bytes())).map(|(_, message)| message.clone()).collect()
    }
}
