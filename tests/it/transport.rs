//! MQTT over TLS, WebSocket and WebSocket over TLS: clients connect on each listener and
//! are routed end to end like TCP clients.

use std::net::SocketAddr;

use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};

use crate::fixtures::{route_rule, Pki};
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
        config.broker.tls_cert = Some(certs.path().join("cert.pem"));
        config.broker.tls_key = Some(certs.path().join("key.pem"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_names_the_client_and_binds_its_id() {
    use rcgen::{CertificateParams, DnType, KeyPair};
    let pki = Pki::new("door-lock fleet CA", &["127.0.0.1"]);
    let ca = &pki.ca;
    let lock_key = KeyPair::generate().unwrap();
    let mut lock_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    lock_params.distinguished_name.push(DnType::CommonName, "lock-1");
    let lock = lock_params.signed_by(&lock_key, ca).unwrap();

    let (ca_pem, server_pem, server_key_pem) = (pki.ca_pem.clone(), pki.server_pem.clone(), pki.server_key_pem.clone());
    let acl = pki.write("locks.acl", "allow all publish devices/%u/state\ndeny all all #\n");
    let tls = addr();
    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    let scene = Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| {
        config.auth.anonymous = false;
        config.auth.acl = Some(acl);
        config.broker.tls_listen = Some(tls);
        config.broker.tls_cert = Some(server_pem);
        config.broker.tls_key = Some(server_key_pem);
        config.broker.tls_client_ca = Some(ca_pem);
        config.broker.tls_identity = hookline::config::TlsIdentity::CommonName;
        config.broker.tls_identity_is_client_id = true;
    })
    .await;
    let options = |client_id: &str| {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", tls.port());
        let client_auth = Some((lock.pem().into_bytes(), lock_key.serialize_pem().into_bytes()));
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Simple { ca: ca.pem().into_bytes(), alpn: None, client_auth }));
        options
    };
    // The certificate of lock-1 logs in as lock-1 without a password; the ACL's %u is its name.
    let device = Device::connect_options(options("lock-1")).await;
    device.publish("devices/lock-1/state", "{}", QoS::AtLeastOnce).await;
    assert_eq!(scene.file_records(1).await[0]["key"], "lock-1");
    // The same certificate under another client id is refused.
    let impostor = tokio::spawn(Device::connect_options(options("lock-2"))).await;
    assert!(impostor.is_err(), "lock-1's certificate used as lock-2");
    assert_eq!(scene.counter("mqtt_refused_not_authorized"), 1);
}
