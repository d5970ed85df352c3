//! `hookline user ...`: maintains the credentials file (`auth.credentials`).
//!
//! Passwords are read from standard input (first line), never from the command line,
//! where they would end up in shell history and process listings. `import` reads many
//! users at once, from a CSV list or a Mosquitto password file, and writes the file once.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};

use crate::access::hash::{self, HashKind};
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
        /// How the password is hashed: `argon2id` for passwords people choose, `pbkdf2`
        /// for random machine secrets (128 bits or more).
        #[arg(long, value_enum, default_value = "argon2id")]
        hash: HashKind,
    },
    /// Remove a user.
    Remove {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Print the hash of the password read from stdin.
    Hash {
        #[arg(long, value_enum, default_value = "argon2id")]
        hash: HashKind,
    },
    /// Add or update many users at once, read from stdin (or `--from`), writing the file
    /// once. `csv`: one user a line, `name,secret[,client ids]`, the client ids separated
    /// by spaces; a secret that is already a hash (`$argon2id$...`, `$7$...`, `$6$...`) is
    /// kept as it is. `mosquitto`: a Mosquitto password file, `name:hash` a line.
    Import {
        /// The credentials file; created if missing. Users already in it stay, unless
        /// the import names them again.
        #[arg(long)]
        file: PathBuf,
        /// Where the users are read from; stdin without it.
        #[arg(long)]
        from: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "csv")]
        format: ImportFormat,
        /// How the secrets of a CSV list are hashed (see `add`).
        #[arg(long, value_enum, default_value = "argon2id")]
        hash: HashKind,
        /// A client id every imported user may connect as, where a CSV line names none
        /// (repeatable; `%u`: its own name).
        #[arg(long = "client-id")]
        client_ids: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    Csv,
    Mosquitto,
}

pub fn run(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add { name, file, client_ids, hash } => {
            check_name(&name)?;
            let mut credentials = read_or_new(&file)?;
            let user = User::new(hash::hash(hash, &read_password()?), client_ids);
            let existed = credentials.users.insert(name.clone(), user).is_some();
            save(&credentials, &file)?;
            println!("{} user {name} in {}", if existed { "updated" } else { "added" }, file.display());
        }
        UserCommand::Remove { name, file } => {
            let mut credentials = Credentials::from_file(&file).map_err(anyhow::Error::msg)?;
            if credentials.users.remove(&name).is_none() {
                bail!("no user {name} in {}", file.display());
            }
            save(&credentials, &file)?;
            println!("removed user {name} from {}", file.display());
        }
        UserCommand::Hash { hash } => println!("{}", hash::hash(hash, &read_password()?)),
        UserCommand::Import { file, from, format, hash, client_ids } => {
            let text = match &from {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
                None => {
                    let mut text = String::new();
                    std::io::stdin().read_to_string(&mut text).context("cannot read the users from stdin")?;
                    text
                }
            };
            let source = from.as_ref().map_or("stdin".to_string(), |p| p.display().to_string());
            let entries = parse_import(&text, format, &source)?;
            let imported = hash_all(entries, hash, &client_ids);
            let mut credentials = read_or_new(&file)?;
            let before = credentials.users.len();
            let count = imported.len();
            credentials.users.extend(imported);
            let added = credentials.users.len() - before;
            save(&credentials, &file)?;
            println!("imported {count} users into {} ({added} new, {} updated)", file.display(), count - added);
        }
    }
    Ok(())
}

/// One user of an import, before hashing: its name, its secret or ready hash, and the
/// client ids its line names.
struct Entry {
    name: String,
    secret: Secret,
    client_ids: Vec<String>,
}

enum Secret {
    Plain(String),
    Hashed(String),
}

/// The users of `text`; an error names the line and what is wrong with it.
fn parse_import(text: &str, format: ImportFormat, source: &str) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{source} line {}", n + 1);
        let (name, secret, client_ids) = match format {
            ImportFormat::Mosquitto => {
                let (name, hashed) = line.split_once(':').with_context(|| format!("{}: not `name:hash`", at()))?;
                hash::check(hashed).map_err(|e| anyhow::anyhow!("{}: user {name:?}: {e}", at()))?;
                (name, Secret::Hashed(hashed.to_string()), Vec::new())
            }
            ImportFormat::Csv => {
                let mut fields = line.splitn(3, ',');
                let (name, secret) = (fields.next().unwrap_or_default(), fields.next());
                let secret = secret.filter(|s| !s.is_empty()).with_context(|| format!("{}: not `name,secret[,client ids]`", at()))?;
                let client_ids = fields.next().map(|ids| ids.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
                let secret = match hash::check(secret) {
                    Ok(()) => Secret::Hashed(secret.to_string()),
                    Err(_) => Secret::Plain(secret.to_string()),
                };
                (name, secret, client_ids)
            }
        };
        check_name(name).with_context(at)?;
        entries.push(Entry { name: name.to_string(), secret, client_ids });
    }
    Ok(entries)
}

/// Hashes the plain secrets on every core, in the order given.
fn hash_all(entries: Vec<Entry>, kind: HashKind, default_client_ids: &[String]) -> Vec<(String, User)> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = entries.len().div_ceil(cores).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .map(|entries| {
                scope.spawn(move || {
                    let user = |entry: &Entry| {
                        let hashed = match &entry.secret {
                            Secret::Plain(secret) => hash::hash(kind, secret),
                            Secret::Hashed(hashed) => hashed.clone(),
                        };
                        let client_ids = if entry.client_ids.is_empty() { default_client_ids.to_vec() } else { entry.client_ids.clone() };
                        (entry.name.clone(), User::new(hashed, client_ids))
                    };
                    entries.iter().map(user).collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("a hashing thread does not panic")).collect()
    })
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() {
        bail!("the user name must not be empty (an empty name means an anonymous client)");
    }
    Ok(())
}

fn read_or_new(file: &Path) -> anyhow::Result<Credentials> {
    if file.exists() {
        Credentials::from_file(file).map_err(anyhow::Error::msg)
    } else {
        Ok(Credentials::default())
    }
}

fn save(credentials: &Credentials, file: &Path) -> anyhow::Result<()> {
    credentials.save(file).with_context(|| format!("cannot write {}", file.display()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_list_takes_secrets_ready_hashes_and_client_ids() {
        let ready = hash::hash(HashKind::Pbkdf2, "b-secret");
        let text = format!("# fleet\nlock-a,a-secret\nlock-b,{ready},lock-b lock-b-*\n\n");
        let users = hash_all(parse_import(&text, ImportFormat::Csv, "test").unwrap(), HashKind::Pbkdf2, &["%u".to_string()]);
        let credentials = Credentials { users: users.into_iter().collect() };
        assert_eq!(credentials.login("lock-a", "a-secret", "lock-a"), Ok(()));
        assert!(credentials.login("lock-a", "a-secret", "lock-b").is_err(), "bound to its own name by --client-id %u");
        assert_eq!(credentials.users["lock-b"].hash(), ready, "a ready hash is kept");
        assert_eq!(credentials.login("lock-b", "b-secret", "lock-b-2"), Ok(()));
    }

    #[test]
    fn a_mosquitto_file_moves_over_and_a_bad_line_is_named() {
        let text =
            "lock:$7$101$Vgeb5twGzXXgyuIA$sUIZovx1Ymgo4CDrB7Onm6uSowS68dySOBrczff5NDx3LX06qx3rzjbj99N1JyqfivsY/C1/RjdC5qH2qCo0RQ==\n";
        let users = hash_all(parse_import(text, ImportFormat::Mosquitto, "passwd").unwrap(), HashKind::Argon2id, &[]);
        let credentials = Credentials { users: users.into_iter().collect() };
        assert_eq!(credentials.login("lock", "lock-secret", "anything"), Ok(()));

        let error = parse_import("lock:$7$101$Vgeb\nother:plain\n", ImportFormat::Mosquitto, "passwd").err().unwrap().to_string();
        assert!(error.contains("passwd line 1"), "{error}");
        let error = parse_import("lock-a\n", ImportFormat::Csv, "users.csv").err().unwrap().to_string();
        assert!(error.contains("users.csv line 1") && error.contains("name,secret"), "{error}");
    }
}
