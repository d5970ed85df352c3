//! `hookline user ...`: maintains the credentials file (`auth.credentials`).
//!
//! Passwords are read from standard input (first line), never from the command line,
//! where they would end up in shell history and process listings.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;

use crate::access::{Credentials, User};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user, or change its password; the password is read from stdin.
    Add {
        name: String,
        /// The credentials file; created if missing.
        #[arg(long)]
        file: PathBuf,
        /// A client id the user may connect as (repeatable): exact, `%u` for the user
        /// name (one lock, one login), or a prefix ending in `*`. None: any client id.
        #[arg(long = "client-id")]
        client_ids: Vec<String>,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Print the argon2 hash of the password read from stdin.
    Hash,
}

pub fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, file, client_ids } => {
            if name.is_empty() {
                bail!("the user name must not be empty (an empty name means an anonymous client)");
            }
            let mut credentials = read_or_new(&file)?;
            let user = User::new(Credentials::hash(&read_password()?), client_ids);
            let existed = credentials.users.insert(name.clone(), user).is_some();
            credentials.save(&file).with_context(|| format!("cannot write {}", file.display()))?;
            println!("{} user {name} in {}", if existed { "updated" } else { "added" }, file.display());
        }
        UserCommand::Remove { name, file } => {
            let mut credentials = Credentials::from_file(&file).map_err(anyhow::Error::msg)?;
            if credentials.users.remove(&name).is_none() {
                bail!("no user {name} in {}", file.display());
            }
            credentials.save(&file).with_context(|| format!("cannot write {}", file.display()))?;
            println!("removed user {name} from {}", file.display());
        }
        UserCommand::Hash => println!("{}", Credentials::hash(&read_password()?)),
    }
    Ok(())
}

fn read_or_new(file: &std::path::Path) -> anyhow::Result<Credentials> {
    if file.exists() {
        Credentials::from_file(file).map_err(anyhow::Error::msg)
    } else {
        Ok(Credentials::default())
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("empty password: write it on stdin, e.g. `echo \"$PASSWORD\" | hookline user add NAME --file FILE`");
    }
    Ok(password)
}
