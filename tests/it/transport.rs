//! MQTT over TLS, WebSocket and WebSocket over TLS: clients connect on each listener and
//! are routed end to end like TCP clients.

use std::net::SocketAddr;

use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};

use crate::fixtures::route_rule;
use crate::scene::{free_port, Device, Scene};

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ws_and_wss_clients_are_routed_end_to_end() {
    let certs = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (generated.cert.pem(), generated.signing_key.serialize_pem());
    std::fs::write(certs.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(certs.path().join("key.pem"), &key_pem).unwrap();

    let (tls, ws, wss) = (addr(), addr(), addr());
    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    let scene = Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| {
        config.broker.tls_listen = Some(tls);
        config.broker.ws_listen = Some(ws);
        config.broker.wss_listen = Some(wss);
        config.broker.tls_cert = certs.path().join("cert.pem");
        config.broker.tls_key = certs.path().join("key.pem");
    })
    .await;

    let trust = || TlsConfiguration::Simple { ca: cert_pem.clone().into_bytes(), alpn: None, client_auth: None };
    let mut over_tls = MqttOptions::new("lock-tls", "127.0.0.1", tls.port());
    over_tls.set_transport(Transport::tls_with_config(trust()));
    let mut over_ws = MqttOptions::new("lock-ws", format!("ws://127.0.0.1:{}/mqtt", ws.port()), ws.port());
    over_ws.set_transport(Transport::Ws);
    let mut over_wss = MqttOptions::new("lock-wss", format!("wss://127.0.0.1:{}/mqtt", wss.port()), wss.port());
    over_wss.set_transport(Transport::wss_with_config(trust()));

    for (n, options) in [over_tls, over_ws, over_wss].into_iter().enumerate() {
        let client_id = options.client_id();
        let mut device = Device::connect_options(options).await;
        device.publish(&format!("devices/{client_id}/state"), "{}", QoS::AtLeastOnce).await;
        device.wait_pubacks(1).await;
        let records = scene.file_records(n + 1).await;
        assert_eq!(records[n]["key"], client_id.as_str(), "{records:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_without_a_certificate_is_a_config_error() {
    let mut config = hookline::Config::default();
    config.broker.tls_listen = Some(addr());
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("broker.tls_cert"), "{err}");
}
