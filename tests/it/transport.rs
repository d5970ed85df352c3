//! MQTT over TLS, WebSocket and WebSocket over TLS: clients connect on each listener and
//! are routed end to end like TCP clients; Debian's mosquitto_pub (OpenSSL) connects by
//! IP address, as device stacks do, with and without a client certificate.

use std::net::SocketAddr;
use std::path::Path;

use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};

use crate::support::fixtures::{route_rule, Pki};
use crate::support::scene::{Device, Scene};

/// Port 0: each listener's port is read back once it is bound.
fn addr() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ws_and_wss_clients_are_routed_end_to_end() {
    let certs = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (generated.cert.pem(), generated.signing_key.serialize_pem());
    std::fs::write(certs.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(certs.path().join("key.pem"), &key_pem).unwrap();

    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    let scene = Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| {
        config.broker.tls_listen = Some(addr());
        config.broker.ws_listen = Some(addr());
        config.broker.wss_listen = Some(addr());
        config.broker.tls_cert = Some(certs.path().join("cert.pem"));
        config.broker.tls_key = Some(certs.path().join("key.pem"));
    })
    .await;
    let [_, tls, ws, wss] = scene.gateway().listener_addrs() else { panic!("four listeners") };

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

    let acl = pki.write("locks.acl", "allow all publish devices/%u/state\ndeny all all #\n");
    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    let scene = Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| {
        certificates_name_clients(config, &pki);
        config.auth.acl = Some(acl);
    })
    .await;
    let tls = scene.gateway().listener_addrs()[1];
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

/// A TLS listener with `pki`'s server certificate where only clients with a certificate
/// of `pki`'s CA connect, named by its common name, which must be their client id.
fn certificates_name_clients(config: &mut hookline::Config, pki: &Pki) {
    config.auth.anonymous = false;
    config.broker.tls_listen = Some(addr());
    config.broker.tls_cert = Some(pki.server_pem.clone());
    config.broker.tls_key = Some(pki.server_key_pem.clone());
    config.broker.tls_client_ca = Some(pki.ca_pem.clone());
    config.broker.tls_identity = hookline::config::TlsIdentity::CommonName;
    config.broker.tls_identity_is_client_id = true;
}

/// Runs Debian's mosquitto_pub (OpenSSL), publishing one QoS 1 message; whether it
/// exited 0, and what it printed.
fn mosquitto_pub(args: &[&str]) -> (bool, String) {
    let bin = std::env::var("MOSQUITTO_PUB").unwrap_or_else(|_| "/usr/bin/mosquitto_pub".to_string());
    let output = std::process::Command::new(&bin)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}; install Debian's mosquitto-clients (.ci/run does) or set MOSQUITTO_PUB"));
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_clients_connect_by_ip_address_over_tls_and_with_a_client_certificate() {
    use rcgen::{CertificateParams, DnType, KeyPair};
    // The server's certificate names the address the clients dial; OpenSSL puts that
    // address in its client hello as the server name, which RFC 6066 forbids.
    let pki = Pki::new("door-lock fleet CA", &["127.0.0.1"]);
    let lock_key = KeyPair::generate().unwrap();
    let mut lock_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    lock_params.distinguished_name.push(DnType::CommonName, "lock-7");
    let lock_pem = pki.write("lock-7.pem", &lock_params.signed_by(&lock_key, &pki.ca).unwrap().pem());
    let lock_key_pem = pki.write("lock-7.key", &lock_key.serialize_pem());
    let rule = route_rule("message.publish", "devices/+/state", "message_state");
    let scene = Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| {
        config.broker.tls_listen = Some(addr());
        config.broker.tls_cert = Some(pki.server_pem.clone());
        config.broker.tls_key = Some(pki.server_key_pem.clone());
    })
    .await;
    let port = scene.gateway().listener_addrs()[1].port().to_string();
    let publish = |client: &str, extra: &[&str]| {
        let mut args = vec!["-h", "127.0.0.1", "-p", &port, "--cafile", path(&pki.ca_pem), "-q", "1", "-i", client];
        args.extend_from_slice(extra);
        let topic = format!("devices/{client}/state");
        args.extend_from_slice(&["-t", &topic, "-m", "{}"]);
        mosquitto_pub(&args)
    };
    let (ok, said) = tokio::task::block_in_place(|| publish("lock-ip", &[]));
    assert!(ok, "mosquitto_pub over TLS by IP address: {said}");
    assert_eq!(scene.file_records(1).await[0]["key"], "lock-ip");
    drop(scene);

    // Mutual TLS: the certificate names the client.
    let scene = Scene::start_with(&[("state.wat", rule.as_bytes())], None, |config| certificates_name_clients(config, &pki)).await;
    let port = scene.gateway().listener_addrs()[1].port().to_string();
    let certificate = ["--cert", path(&lock_pem), "--key", path(&lock_key_pem)];
    let publish = |client: &str, extra: &[&str]| {
        let mut args = vec!["-h", "127.0.0.1", "-p", &port, "--cafile", path(&pki.ca_pem), "-q", "1", "-i", client];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-t", "devices/lock-7/state", "-m", "{}"]);
        mosquitto_pub(&args)
    };
    let (ok, said) = tokio::task::block_in_place(|| publish("lock-7", &certificate));
    assert!(ok, "mosquitto_pub with lock-7's certificate: {said}");
    assert_eq!(scene.file_records(1).await[0]["key"], "lock-7");
    let (ok, said) = tokio::task::block_in_place(|| publish("lock-8", &certificate));
    assert!(!ok && said.contains("not authorised"), "lock-7's certificate used as lock-8: {said}");
    let (ok, said) = tokio::task::block_in_place(|| publish("lock-7", &[]));
    assert!(!ok, "no certificate, no connection: {said}");
}
