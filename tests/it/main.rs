//! Integration tests: real MQTT clients over TCP against a real gateway, records read
//! back through the Kafka protocol (librdkafka's mock cluster, or tansu) or from the
//! embedded file sink.

mod abi_v2;
mod access;
mod admin;
mod cli;
mod cluster;
mod conformance;
mod connack;
mod dashboard;
mod downlink;
mod durability;
mod full_disk;
mod hooks;
mod hostile_input;
mod hostile_rules;
mod hot_reload;
mod kafka_away;
mod logins;
mod mqtt_promises;
mod open_files;
mod ordering;
mod paho;
mod properties;
mod rabbitmq;
mod recovery;
mod sdk_tables;
mod seed_scenario;
mod transport;

mod support;
