//! The command line: `hookline run` and its flags (each also a `HOOKLINE_*` variable), the
//! subcommands' dispatch, the log format, and the file of bound addresses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use super::rule;
use super::user;
use crate::config::{Config, SinkKind, ValidConfig};

#[derive(Debug, Parser)]
#[command(name = "hookline", version, about = "MQTT broker-gateway routing device traffic to Kafka through hot-reloaded WebAssembly rules")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: MQTT broker, rule workers and the Kafka (or file) sink.
    Run(RunArgs),
    /// Tools for rule authors: check a module, run events through it.
    #[command(subcommand)]
    Rule(rule::RuleCommand),
    /// Manage the users of the credentials file (auth.credentials).
    #[command(subcommand)]
    User(user::UserCommand),
}

/// The flags of `hookline run`. Their `///` docs are the command-line table of `docs/configuration.md`
/// (`tests/readme_tables.rs` renders it from them): write each as its "meaning" cell, and name the
/// config key a flag sets as "config key `KEY`", which gives the table its default.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// TOML config file; flags and HOOKLINE_* variables override its keys.
    #[arg(long, env = "HOOKLINE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// MQTT TCP listen address (config key `broker.listen`).
    #[arg(long, env = "HOOKLINE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Rules directory (config key `rules.dir`).
    #[arg(long, env = "HOOKLINE_RULES", value_name = "DIR")]
    pub rules: Option<PathBuf>,
    /// Kafka bootstrap servers (config key `kafka.bootstrap_servers`); also selects the
    /// Kafka sink (`sink.kind = "kafka"`). Without it, and without a `[sink]` section,
    /// records go to the embedded file sink under the data directory.
    #[arg(long, env = "HOOKLINE_KAFKA", value_name = "SERVERS")]
    pub kafka: Option<String>,
    /// Data directory: the spool and the file sink's records (config key `data`).
    #[arg(long, env = "HOOKLINE_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Node name written in envelopes (config key `node`).
    #[arg(long, env = "HOOKLINE_NODE", value_name = "NAME")]
    pub node: Option<String>,
    /// Address of the admin endpoint: dashboard, /metrics, /healthz, /readyz, /api (config
    /// key `admin.listen`).
    #[arg(long, env = "HOOKLINE_ADMIN", value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Let clients connect without a username (config key `auth.anonymous`).
    #[arg(long, env = "HOOKLINE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "HOOKLINE_LOG_JSON")]
    pub log_json: bool,
    /// Once every listener is bound, write where to this file as one JSON object, e.g.
    /// `{"admin":"127.0.0.1:40124","mqtt":"127.0.0.1:40123"}` (also `tls`, `ws`, `wss` when
    /// configured): how a supervisor or a test learns the ports of listeners given port 0.
    /// Replaced whole (renamed into place), so a reader never sees half of it.
    #[arg(long, env = "HOOKLINE_ADDRESSES_FILE", value_name = "FILE")]
    pub addresses_file: Option<PathBuf>,
}

impl RunArgs {
    /// The effective configuration, validated: file (if any), then flags and variables
    /// on top. The one place raw input becomes a `ValidConfig`.
    pub fn resolve(&self) -> anyhow::Result<ValidConfig> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(listen) = self.listen {
            config.broker.listen = listen;
        }
        if let Some(rules) = &self.rules {
            config.rules.dir = rules.clone();
        }
        if let Some(kafka) = &self.kafka {
            config.kafka.bootstrap_servers = kafka.clone();
            config.sink.kind = Some(SinkKind::Kafka);
        }
        if let Some(data) = &self.data {
            config.data = data.clone();
        }
        if let Some(node) = &self.node {
            config.node = node.clone();
        }
        if let Some(admin) = self.admin {
            config.admin.listen = admin;
        }
        if self.allow_anonymous {
            config.auth.anonymous = true;
        }
        Ok(config.validate()?)
    }
}

/// Entry point of the binary: prints an error chain on one line and exits non-zero.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Rule(command) => rule::run(command),
        Command::User(command) => user::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hookline: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    init_logging(args.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hookline-io")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = crate::gateway::shutdown_signal()?;
        let gateway = crate::gateway::Gateway::start(config).await?;
        if let Some(path) = &args.addresses_file {
            if let Err(err) = write_addresses(path, &gateway.bound_addrs()) {
                gateway.shutdown().await?;
                return Err(err);
            }
        }
        shutdown.await;
        gateway.shutdown().await
    })
}

/// Writes `{"name":"ip:port",...}` to a temporary file beside `path`, then renames it
/// over `path`: a rename within a directory is atomic, so a reader polling for the file
/// finds either nothing or all of it.
fn write_addresses(path: &std::path::Path, addrs: &[(&str, SocketAddr)]) -> anyhow::Result<()> {
    let json: serde_json::Map<String, serde_json::Value> =
        addrs.iter().map(|(name, addr)| (name.to_string(), addr.to_string().into())).collect();
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let context = || format!("cannot write the bound addresses to {} (--addresses-file)", path.display());
    std::fs::write(&temporary, serde_json::Value::Object(json).to_string()).with_context(context)?;
    std::fs::rename(&temporary, path).with_context(context)
}

/// Logs go to stderr; `RUST_LOG` overrides the default filter. rumqttd logs every
/// ordinary disconnect as an error, so its default level is warn. rumqttd also opens an
/// error-level span around every publish whose fields format the topic; spans add
/// nothing to these logs, so rumqttd's are never recorded (the profile showed that
/// formatting in the router thread's hot path).
fn init_logging(json: bool) {
    use tracing_subscriber::filter::{EnvFilter, FilterExt, FilterFn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let levels = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rumqttd=warn"));
    let no_rumqttd_spans = FilterFn::new(|meta| !(meta.is_span() && meta.target().starts_with("rumqttd")));
    let colors = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colors);
    let layer = match json {
        true => layer.json().boxed(),
        false => layer.boxed(),
    };
    tracing_subscriber::registry().with(layer.with_filter(levels.and(no_rumqttd_spans))).init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Destination;

    fn resolve(args: &[&str]) -> anyhow::Result<ValidConfig> {
        let cli = Cli::try_parse_from(["hookline", "run"].iter().chain(args)).expect("flags parse");
        let Command::Run(run) = cli.command else { unreachable!("parsed `run`") };
        run.resolve()
    }

    #[test]
    fn the_addresses_file_is_replaced_whole_with_every_address_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addresses.json");
        std::fs::write(&path, "an earlier run's").unwrap();
        let addrs = [("mqtt", "127.0.0.1:40123".parse().unwrap()), ("admin", "127.0.0.1:40124".parse().unwrap())];
        write_addresses(&path, &addrs).unwrap();
        let written: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written, serde_json::json!({"mqtt": "127.0.0.1:40123", "admin": "127.0.0.1:40124"}));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left beside it");
    }

    #[test]
    fn the_kafka_flag_sets_the_servers_and_selects_the_kafka_sink() {
        let config = resolve(&["--allow-anonymous", "--kafka", "kafka:9092"]).unwrap();
        assert_eq!(config.destinations(), [Destination::Kafka]);
        assert_eq!(config.kafka.bootstrap_servers, "kafka:9092");
    }

    #[test]
    fn without_the_kafka_flag_records_go_to_the_file_sink() {
        assert_eq!(resolve(&["--allow-anonymous"]).unwrap().destinations(), [Destination::File]);
    }

    #[test]
    fn the_kafka_flag_completes_a_file_with_kafka_settings_but_no_sink() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hookline.toml");
        std::fs::write(&file, "[kafka]\nbootstrap_servers = \"a:9092\"\nlinger_ms = 20\n").unwrap();
        let file = file.to_str().unwrap();
        let err = resolve(&["--allow-anonymous", "--config", file]).unwrap_err().to_string();
        assert!(err.contains("`sink.kind`") && err.contains("[sink] kind = \"kafka\""), "{err}");
        let config = resolve(&["--allow-anonymous", "--config", file, "--kafka", "b:9092"]).unwrap();
        assert_eq!(
            (config.destinations(), config.kafka.bootstrap_servers.as_str(), config.kafka.linger_ms),
            (&[Destination::Kafka][..], "b:9092", 20)
        );
    }
}
