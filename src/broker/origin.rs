//! What a message must carry through rumqttd's router from its publisher's connection
//! to its subscribers' connections: the QoS and retain flag it was published with, when
//! it was published, and who published it.
//!
//! The router overwrites the QoS with the subscription's and clears the retain flag, so
//! without this a subscriber's connection could neither deliver `min(published,
//! granted)` QoS nor honour Retain As Published, and `message.delivered` could not say
//! `from`. It travels as one MQTT 5 user property under a key no client can send (MQTT
//! strings may not hold U+0000): the edge removes any such property a client sends, and
//! strips it from every message before it is written to a client.

use std::sync::Arc;

use rumqttd::protocol::PublishProperties;

const KEY: &str = "\u{0}hookline-origin";

/// Where a routed message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub qos: u8,
    pub retain: bool,
    /// Unix milliseconds of the publish.
    pub published_ms: u64,
    /// Client id of the publisher, or `kafka:<topic>` for a downlink message.
    pub from: Arc<str>,
    /// A downlink message's acknowledgement id (`Acks`): its first delivery resolves it.
    pub ack: Option<u64>,
}

/// Removes any origin a client tried to send, then attaches `origin`.
pub fn attach(props: &mut Option<PublishProperties>, origin: &Origin) {
    let props = props.get_or_insert_with(PublishProperties::default);
    props.user_properties.retain(|(key, _)| key != KEY);
    let ack = origin.ack.map(|id| format!("/{id}")).unwrap_or_default();
    let value = format!("{}{}{}{ack}:{}", origin.qos, origin.retain as u8, origin.published_ms, origin.from);
    props.user_properties.push((KEY.to_string(), value));
}

/// Takes the origin off a routed message, leaving the publisher's own properties.
pub fn take(props: &mut Option<PublishProperties>) -> Option<Origin> {
    let list = &mut props.as_mut()?.user_properties;
    let at = list.iter().position(|(key, _)| key == KEY)?;
    let (_, value) = list.remove(at);
    let (head, from) = value.split_once(':')?;
    let mut digits = head.chars();
    let qos = digits.next()?.to_digit(10)? as u8;
    let retain = digits.next()? == '1';
    let (published_ms, ack) = match digits.as_str().split_once('/') {
        Some((ms, ack)) => (ms.parse().ok()?, Some(ack.parse().ok()?)),
        None => (digits.as_str().parse().ok()?, None),
    };
    Some(Origin { qos, retain, published_ms, from: from.into(), ack })
}

/// Removes an origin a client sent on its own publish.
pub fn forget(props: &mut Option<PublishProperties>) {
    if let Some(props) = props {
        props.user_properties.retain(|(key, _)| key != KEY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_survives_the_trip_and_leaves_the_publishers_properties_alone() {
        let mut props = Some(PublishProperties {
            user_properties: vec![("app".into(), "x".into()), (KEY.into(), "forged".into())],
            ..Default::default()
        });
        let origin = Origin { qos: 1, retain: true, published_ms: 1_574_753_026_269, from: "lock:1".into(), ack: None };
        attach(&mut props, &origin);
        assert_eq!(take(&mut props), Some(origin));
        let downlink = Origin { qos: 1, retain: false, published_ms: 7, from: "kafka:device_commands".into(), ack: Some(42) };
        attach(&mut props, &downlink);
        assert_eq!(take(&mut props), Some(downlink));
        assert_eq!(props.unwrap().user_properties, vec![("app".to_string(), "x".to_string())]);
    }
}
