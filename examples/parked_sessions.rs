//! What an idle persistent session costs the gateway: N MQTT 3.1.1 clients connect with
//! clean session 0, subscribe QoS 1 to their command topic and disconnect, leaving N
//! parked sessions (subscriptions kept by hookline and by rumqttd's router). Reports the
//! process's resident memory growth per session (gateway in process, file sink).
//!
//!   cargo run --release --example parked_sessions -- --sessions 20000

use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    sessions: usize,
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap_or(0)
}

/// An MQTT string: u16 length, bytes.
fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// Connects as `id` (clean session 0), subscribes QoS 1 to its command topic, leaves.
async fn park(addr: std::net::SocketAddr, id: String) -> std::io::Result<()> {
    let id = id.as_str();
    let mut socket = TcpStream::connect(addr).await?;
    let mut connect = Vec::new();
    string(&mut connect, "MQTT");
    connect.extend_from_slice(&[4, 0x00, 0, 60]);
    string(&mut connect, id);
    let mut subscribe = 1u16.to_be_bytes().to_vec();
    string(&mut subscribe, &format!("devices/{id}/command"));
    subscribe.push(1);
    socket.write_all(&packet(0x10, &connect)).await?;
    let mut connack = [0u8; 4];
    socket.read_exact(&mut connack).await?;
    socket.write_all(&packet(0x82, &subscribe)).await?;
    let mut suback = [0u8; 5];
    socket.read_exact(&mut suback).await?;
    socket.write_all(&[0xe0, 0]).await?;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.read_to_end(&mut rest)).await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    runtime.block_on(async {
        let mut config = hookline::Config { node: "gateway@127.0.0.1".into(), data: dir.path().join("data"), ..Default::default() };
        config.broker.listen = "127.0.0.1:0".parse()?;
        config.broker.max_connections = args.sessions + 100;
        config.rules.dir = dir.path().join("rules");
        config.admin.enabled = false;
        config.auth.anonymous = true;
        let gateway = hookline::Gateway::start(config.validate()?).await?;
        let addr = gateway.mqtt_addr();
        // Warm up allocator and router with a few sessions not counted.
        for i in 0..200 {
            park(addr, format!("warm-{i}")).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib();
        for batch in (0..args.sessions).collect::<Vec<_>>().chunks(200) {
            let parks: Vec<_> = batch.iter().map(|i| tokio::spawn(park(addr, format!("lock-{i}")))).collect();
            for park in parks {
                park.await??;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_kib();
        println!(
            "{} parked persistent sessions: RSS {} KiB -> {} KiB, {:.2} KiB per session (gateway in process, sessions of rumqttd's router and hookline's registry)",
            args.sessions,
            before,
            after,
            (after.saturating_sub(before)) as f64 / args.sessions as f64
        );
        gateway.shutdown().await?;
        anyhow::Ok(())
    })
}
