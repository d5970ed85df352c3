//! Command line: parses flags (each also readable from a `HOOKLINE_*` variable), merges
//! them over the TOML file given by `--config`, and runs the chosen subcommand.
//!
//! Precedence, highest first: flag, environment variable, config file, built-in default.

mod command;
mod rule;
mod scaffold;
mod user;

pub use command::{main, Cli, Command, RunArgs};
