//! The harness, apart from the behaviour under test: the scene (a gateway, Kafka-protocol
//! peers, MQTT clients), rule fixtures, the RabbitMQ and tansu processes, raw MQTT
//! packets, and ports for servers that cannot report theirs.

pub mod fixtures;
pub mod ports;
pub mod rabbit;
pub mod raw_mqtt;
pub mod scene;
pub mod tansu;
