//! What an idle persistent session costs the gateway: N MQTT 3.1.1 clients connect with
//! clean session 0, subscribe QoS 1 to their command topic and disconnect, leaving N
//! parked sessions (subscriptions kept by hookline and by rumqttd's router). Reports the
//! resident memory growth per session: of this process, with the gateway in it (file
//! sink), or of another broker's process (`--mqtt ADDR --pid PID`: Mosquitto, bare
//! rumqttd), for a side-by-side reference.
//!
//!   cargo run --release --example parked_sessions -- --sessions 20000
//!   cargo run --release --example parked_sessions -- --sessions 20000 --mqtt 127.0.0.1:1883 --pid "$(pgrep mosquitto)"

use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    sessions: usize,
    /// Another broker to measure instead of an in-process gateway.
    #[arg(long, requires = "pid")]
    mqtt: Option<std::net::SocketAddr>,
    /// That broker's process id.
    #[arg(long)]
    pid: Option<u32>,
}

fn rss_kib(pid: Option<u32>) -> u64 {
    let path = pid.map_or_else(|| "/proc/self/status".to_string(), |pid| format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(path).unwrap_or_default();
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
        let gateway = match args.mqtt {
            Some(_) => None,
            None => {
                let mut config = hookline::Config { node: "gateway@127.0.0.1".into(), data: dir.path().join("data"), ..Default::default() };
                config.broker.listen = "127.0.0.1:0".parse()?;
                config.broker.max_connections = args.sessions + 100;
                config.rules.dir = dir.path().join("rules");
                config.admin.enabled = false;
                config.auth.anonymous = true;
                Some(hookline::Gateway::start(config.validate()?).await?)
            }
        };
        let addr = args.mqtt.or(gateway.as_ref().map(|g| g.mqtt_addr())).expect("a broker");
        let broker = match &gateway {
            Some(_) => "hookline (in process)".to_string(),
            None => format!("the broker at {addr} (pid {})", args.pid.unwrap_or(0)),
        };
        // Warm up allocator and router with a few sessions not counted.
        for i in 0..200 {
            park(addr, format!("warm-{i}")).await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(args.pid);
        for batch in (0..args.sessions).collect::<Vec<_>>().chunks(200) {
            let parks: Vec<_> = batch.iter().map(|i| tokio::spawn(park(addr, format!("lock-{i}")))).collect();
            for park in parks {
                park.await??;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_kib(args.pid);
        println!(
            "{broker}: {} parked persistent sessions: RSS {} KiB -> {} KiB, {:.2} KiB per session",
            args.sessions,
            before,
            after,
            (after.saturating_sub(before)) as f64 / args.sessions as f64
        );
        if let Some(gateway) = gateway {
            gateway.shutdown().await?;
        }
        anyhow::Ok(())
    })
}
