//! What a rule decides for one event: records for the uplink (`Route`, with its
//! `RouteValue`), MQTT messages for a consumed Kafka record (`MqttMessage`, with its
//! `MessageProperties`). The host functions (`abi`) build them; the workers, the
//! downlink and the broker read them.

use std::sync::Arc;

/// One record a rule sends for the current event: where, with what key, headers, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Which destination, as `DestinationNames` numbers them (0: the first, `route`'s).
    pub destination: usize,
    /// Shared with the instance's recent topics, so a rule routing to the same topic
    /// again and again allocates it once.
    pub topic: Arc<str>,
    /// `None`: the event's client id.
    pub key: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: RouteValue,
}

/// What a route's record carries as its value (`route_value`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RouteValue {
    /// The JSON envelope of the event.
    #[default]
    Envelope,
    /// The MQTT payload as the device sent it.
    Payload,
    /// Bytes the rule gave.
    Bytes(Vec<u8>),
}

/// One MQTT message a rule publishes for a consumed Kafka record (`publish`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttMessage {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    /// `None`: the record's value.
    pub payload: Option<Vec<u8>>,
    pub properties: MessageProperties,
}

/// The MQTT 5 properties a rule may set on a publish (`publish_property`,
/// `publish_user_property`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageProperties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Vec<u8>>,
    pub user_properties: Vec<(String, String)>,
}

/// A module's decision for one event: records for the uplink, MQTT messages for a
/// consumed record.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    pub routes: &'a [Route],
    pub publishes: &'a [MqttMessage],
}
