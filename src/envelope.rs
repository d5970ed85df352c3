//! The Kafka record value: a JSON envelope per event, with the field names and order of
//! the widely deployed MQTT-to-Kafka bridge, so existing consumers keep working.
//!
//! Written straight into a caller-owned buffer (no JSON tree, no per-event allocation
//! once the buffer has grown). Field order per hook:
//!
//! - `message.publish`: client_id, username, topic, payload, qos, node, ts
//! - `message.delivered` / `message.acked`: client_id, username, from, topic, payload,
//!   qos, node, ts
//! - `client.connected`: client_id, username, node, ts
//! - `client.disconnected`: client_id, username, reason, node, ts
//! - `session.subscribed` / `session.unsubscribed`: client_id, username, topic, qos
//!   (subscribed only), node, ts
//! - `access.denied`: client_id, username, action (publish, subscribe, will), topic
//!   (the denied topic or filter), node, ts
//!
//! `payload` is the MQTT payload, base64 (standard alphabet, padded).

use base64::Engine as _;

use crate::hooks::{Hook, HookEvent, Reason};

/// Encodes `event` into `out` (cleared first).
pub fn encode(event: &HookEvent, node: &str, out: &mut Vec<u8>) {
    out.clear();
    out.push(b'{');
    field_str(out, "client_id", &event.client_id);
    out.push(b',');
    field_str(out, "username", &event.username);
    match event.hook {
        // A consumed record is never routed (ABI: no `route` during `kafka.record`); its
        // shape is a publish's should that change.
        Hook::MessagePublish | Hook::MessageDelivered | Hook::MessageAcked | Hook::KafkaRecord => {
            if matches!(event.hook, Hook::MessageDelivered | Hook::MessageAcked) {
                out.push(b',');
                field_str(out, "from", event.from.as_deref().unwrap_or(""));
            }
            out.push(b',');
            field_str(out, "topic", &event.topic_str());
            out.extend_from_slice(b",\"payload\":\"");
            let start = out.len();
            let encoded_len = base64::encoded_len(event.payload.len(), true).unwrap_or(0);
            out.resize(start + encoded_len, 0);
            let written = base64::engine::general_purpose::STANDARD.encode_slice(&event.payload, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
            out.push(b'"');
            field_number(out, "qos", event.qos as u64);
        }
        Hook::ClientConnected => {}
        Hook::AccessDenied => {
            out.push(b',');
            field_str(out, "action", event.reason.map_or("publish", Reason::name));
            out.push(b',');
            field_str(out, "topic", &event.topic_str());
        }
        Hook::ClientDisconnected => {
            out.push(b',');
            field_str(out, "reason", event.reason.map_or("closed", Reason::name));
        }
        Hook::SessionSubscribed | Hook::SessionUnsubscribed => {
            out.push(b',');
            field_str(out, "topic", &event.topic_str());
            if event.hook == Hook::SessionSubscribed {
                field_number(out, "qos", event.qos as u64);
            }
        }
    }
    out.push(b',');
    field_str(out, "node", node);
    field_number(out, "ts", event.ts_ms);
    out.push(b'}');
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    // serde_json escapes exactly what JSON requires and writes straight to the Vec.
    serde_json::to_writer(&mut *out, value).expect("writing a str to a Vec cannot fail");
}

fn field_number(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    fn event(hook: Hook) -> HookEvent {
        let mut event = HookEvent::new(hook, Arc::from("10083618796833171"), Arc::from(""));
        event.ts_ms = 1574753026269;
        event
    }

    #[test]
    fn publish_envelope_matches_the_scenario_byte_for_byte() {
        let mut e = event(Hook::MessagePublish);
        e.topic = Bytes::from_static(b"devices/10083618796833171/state");
        e.payload = Bytes::from_static(b"{\"lock_state\":1}");
        e.qos = 1;
        let mut out = Vec::new();
        encode(&e, "gateway@127.0.0.1", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"client_id":"10083618796833171","username":"","topic":"devices/10083618796833171/state","payload":"eyJsb2NrX3N0YXRlIjoxfQ==","qos":1,"node":"gateway@127.0.0.1","ts":1574753026269}"#
        );
    }

    #[test]
    fn acked_envelope_carries_from() {
        let mut e = event(Hook::MessageAcked);
        e.topic = Bytes::from_static(b"devices/10083618796833171/command");
        e.payload = Bytes::from_static(b"x");
        e.qos = 1;
        e.from = Some(Arc::from("business-app-1"));
        e.ts_ms = 1574751635845;
        let mut out = Vec::new();
        encode(&e, "gateway@127.0.0.1", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"client_id":"10083618796833171","username":"","from":"business-app-1","topic":"devices/10083618796833171/command","payload":"eA==","qos":1,"node":"gateway@127.0.0.1","ts":1574751635845}"#
        );
    }

    #[test]
    fn strings_are_escaped_and_every_hook_is_valid_json() {
        for hook in Hook::ALL {
            let mut e = event(hook);
            e.client_id = Arc::from("quote\"back\\slash\nnewline");
            e.topic = Bytes::from_static(b"a/\"b\"");
            e.reason = Some(Reason::Closed);
            let mut out = Vec::new();
            encode(&e, "n", &mut out);
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(value["client_id"], "quote\"back\\slash\nnewline");
            assert_eq!(value["ts"], 1574753026269u64);
        }
    }

    /// The envelope's field names, in order, for each hook (see the module doc).
    fn field_order(hook: Hook) -> &'static [&'static str] {
        match hook {
            Hook::MessagePublish | Hook::KafkaRecord => &["client_id", "username", "topic", "payload", "qos", "node", "ts"],
            Hook::MessageDelivered | Hook::MessageAcked => &["client_id", "username", "from", "topic", "payload", "qos", "node", "ts"],
            Hook::ClientConnected => &["client_id", "username", "node", "ts"],
            Hook::ClientDisconnected => &["client_id", "username", "reason", "node", "ts"],
            Hook::SessionSubscribed => &["client_id", "username", "topic", "qos", "node", "ts"],
            Hook::SessionUnsubscribed => &["client_id", "username", "topic", "node", "ts"],
            Hook::AccessDenied => &["client_id", "username", "action", "topic", "node", "ts"],
        }
    }

    proptest::proptest! {
        /// Whatever bytes and names an event carries, the envelope is one JSON object
        /// with the hook's fields in order, each equal to the event's.
        /// `PROPTEST_CASES` sets the number of cases (CI sets it in `.ci/run`).
        #[test]
        fn envelope_is_json_whose_fields_equal_the_event(
            hook in proptest::sample::select(Hook::ALL.to_vec()),
            client_id in ".{0,24}",
            username in ".{0,12}",
            from in proptest::option::of(".{0,12}"),
            topic in proptest::collection::vec(proptest::num::u8::ANY, 0..48),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            qos in 0u8..=2,
            reason in proptest::sample::select(vec![Reason::Normal, Reason::Closed, Reason::ProtocolError, Reason::Publish, Reason::Will]),
            node in ".{0,16}",
            ts_ms in proptest::num::u64::ANY,
        ) {
            let mut e = HookEvent::new(hook, Arc::from(client_id.as_str()), Arc::from(username.as_str()));
            e.topic = Bytes::from(topic.clone());
            e.payload = Bytes::from(payload.clone());
            e.qos = qos;
            e.from = from.as_deref().map(Arc::from);
            e.reason = Some(reason);
            e.ts_ms = ts_ms;
            let mut out = b"stale bytes from the previous event".to_vec();
            encode(&e, &node, &mut out);

            let value: serde_json::Value = serde_json::from_slice(&out).expect("envelope is JSON");
            let object = value.as_object().expect("envelope is an object");
            let names = field_order(hook);
            proptest::prop_assert_eq!(object.len(), names.len(), "{}", String::from_utf8_lossy(&out));
            // Inside a JSON string every quote is escaped, so `{"name":` or `,"name":`
            // only matches a key: their positions give the field order.
            let text = String::from_utf8(out.clone()).expect("JSON is UTF-8");
            let positions: Vec<usize> = names
                .iter()
                .map(|name| {
                    let key = format!("\"{name}\":");
                    text.match_indices(&key)
                        .find(|(at, _)| matches!(text.as_bytes()[at - 1], b'{' | b','))
                        .map(|(at, _)| at)
                        .expect("every field present")
                })
                .collect();
            proptest::prop_assert!(positions.is_sorted(), "fields out of order: {}", text);

            proptest::prop_assert_eq!(&object["client_id"], client_id.as_str());
            proptest::prop_assert_eq!(&object["username"], username.as_str());
            proptest::prop_assert_eq!(&object["node"], node.as_str());
            proptest::prop_assert_eq!(&object["ts"], ts_ms);
            if names.contains(&"topic") {
                let text = String::from_utf8_lossy(&topic).into_owned();
                proptest::prop_assert_eq!(&object["topic"], text.as_str());
            }
            if names.contains(&"payload") {
                let encoded = object["payload"].as_str().expect("payload is a string");
                let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).expect("payload is base64");
                proptest::prop_assert_eq!(decoded, payload);
            }
            if names.contains(&"qos") {
                proptest::prop_assert_eq!(&object["qos"], qos);
            }
            if names.contains(&"from") {
                proptest::prop_assert_eq!(&object["from"], from.as_deref().unwrap_or(""));
            }
            for name in ["reason", "action"] {
                if names.contains(&name) {
                    proptest::prop_assert_eq!(&object[name], reason.name());
                }
            }
        }
    }
}
