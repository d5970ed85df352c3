//! The "Command line" and "Config reference" tables of `docs/configuration.md`, rendered
//! from the source they describe and compared with that file byte for byte.
//!
//! The config reference comes from the `///` docs of the structs in `src/config/` (read as
//! text: key, then meaning), with defaults from `Config::default()` or, where that cannot
//! show them, from a `Default:` line in the doc. The command-line table comes from
//! clap's view of `hookline run` (long name, value name, variable, help). On a mismatch
//! the test prints the expected table; `HOOKLINE_UPDATE_README=1 cargo test --test readme_tables`
//! writes it into `docs/configuration.md` in place.

use std::collections::BTreeMap;

use clap::CommandFactory;

use hookline::cli::Cli;
use hookline::config::Config;

const UPDATE_VAR: &str = "HOOKLINE_UPDATE_README";

/// A field of a struct in `src/config/`: name, type, `///` lines.
struct Field {
    name: String,
    ty: String,
    doc: Vec<String>,
}

/// The `pub struct`s of `source`, by name, with their `pub` fields in order.
fn structs(source: &str) -> BTreeMap<String, Vec<Field>> {
    let mut structs = BTreeMap::new();
    let mut current: Option<(String, Vec<Field>)> = None;
    let mut doc = Vec::new();
    for line in source.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("pub struct ").and_then(|rest| rest.strip_suffix(" {")) {
            current = Some((name.to_string(), Vec::new()));
            doc.clear();
        } else if line == "}" {
            if let Some((name, fields)) = current.take() {
                structs.insert(name, fields);
            }
        } else if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim().to_string());
        } else if line.starts_with("#[") {
        } else if let (Some((_, fields)), Some(rest)) = (current.as_mut(), line.strip_prefix("pub ")) {
            let (name, ty) = rest.trim_end_matches(',').split_once(": ").expect("a field is `pub name: Type,`");
            fields.push(Field { name: name.to_string(), ty: ty.to_string(), doc: std::mem::take(&mut doc) });
        } else {
            doc.clear();
        }
    }
    structs
}

/// A `///` block as one table cell: lines joined, the final period dropped (as clap does
/// with help), and its `Default:` line apart.
fn cell(key: &str, doc: &[String]) -> (String, Option<String>) {
    let default = doc.iter().find_map(|line| line.strip_prefix("Default: ")).map(str::to_string);
    let text = doc.iter().filter(|line| !line.is_empty() && !line.starts_with("Default: ")).cloned().collect::<Vec<_>>().join(" ");
    assert!(!text.is_empty(), "config key `{key}` has no `///` doc; write one, it is the config table's meaning column");
    assert!(!text.contains('|'), "the doc of `{key}` contains `|`, which would break the config table");
    (text.strip_suffix('.').unwrap_or(&text).to_string(), default)
}

/// A built-in default as the config table shows it.
fn shown(key: &str, defaults: &toml::Value) -> String {
    let value = key.split('.').try_fold(defaults, |value, part| value.get(part));
    match value {
        Some(toml::Value::String(s)) if s.is_empty() => "empty".to_string(),
        Some(toml::Value::String(s)) => format!("`{s}`"),
        Some(toml::Value::Table(t)) if t.is_empty() => "empty".to_string(),
        Some(value) => format!("`{value}`"),
        None => panic!("config key `{key}` has no built-in value to show: give its `///` doc a `Default: ...` line"),
    }
}

/// Every file of `src/config/`, one after the other: a section's structs live in a file
/// of their own.
fn config_source() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config");
    let mut files: Vec<_> = std::fs::read_dir(dir).expect("src/config is readable").map(|entry| entry.unwrap().path()).collect();
    files.sort();
    files.iter().map(|path| std::fs::read_to_string(path).expect("a config source file is readable")).collect::<Vec<_>>().join("\n")
}

/// Rows of the config reference: key, default, meaning.
fn config_rows() -> Vec<[String; 3]> {
    fn walk(structs: &BTreeMap<String, Vec<Field>>, name: &str, prefix: &str, defaults: &toml::Value, rows: &mut Vec<[String; 3]>) {
        for field in &structs[name] {
            let key = format!("{prefix}{}", field.name);
            // A flattened map of named tables (`[sink.<name>]`): its keys sit under `<name>`.
            if let Some(table) = field.ty.strip_prefix("indexmap::IndexMap<String, ").and_then(|t| t.strip_suffix('>')) {
                walk(structs, table, &format!("{prefix}<name>."), defaults, rows);
                continue;
            }
            match structs.contains_key(&field.ty) {
                true => walk(structs, &field.ty, &format!("{key}."), defaults, rows),
                false => {
                    let (meaning, default) = cell(&key, &field.doc);
                    let default = default.unwrap_or_else(|| shown(&key, defaults));
                    rows.push([key, default, meaning]);
                }
            }
        }
    }
    let defaults = toml::Value::try_from(Config::default()).expect("defaults serialize");
    let mut rows = Vec::new();
    walk(&structs(&config_source()), "Config", "", &defaults, &mut rows);
    rows
}

fn config_table() -> String {
    let mut table = "| key | default | meaning |\n| --- | --- | --- |\n".to_string();
    for [key, default, meaning] in config_rows() {
        table += &format!("| `{key}` | {default} | {meaning} |\n");
    }
    table
}

/// The `hookline run` flags. A flag's default is its config key's (named in its help as
/// "config key `KEY`"); a flag without one is "none" if it takes a value, else "off".
fn command_line_table() -> String {
    let defaults: BTreeMap<String, String> = config_rows().into_iter().map(|[key, default, _]| (key, default)).collect();
    let command = Cli::command();
    let run = command.find_subcommand("run").expect("a run subcommand");
    let mut table = "| flag | variable | default | meaning |\n| --- | --- | --- | --- |\n".to_string();
    for arg in run.get_arguments().filter(|arg| arg.get_long().is_some_and(|long| long != "help" && long != "version")) {
        let long = arg.get_long().expect("filtered on it");
        let takes_value = arg.get_action().takes_values();
        let flag = match (takes_value, arg.get_value_names()) {
            (true, Some([name, ..])) => format!("--{long} {name}"),
            (true, _) => format!("--{long} {}", long.to_uppercase()),
            (false, _) => format!("--{long}"),
        };
        let variable = arg.get_env().map(|env| format!("`{}`", env.to_string_lossy())).unwrap_or_default();
        let help = arg.get_help().map(|help| help.to_string()).unwrap_or_else(|| panic!("--{long} has no help; give it a `///` doc"));
        assert!(!help.contains('|'), "the help of --{long} contains `|`, which would break the command-line table");
        let key = help.split_once("config key `").and_then(|(_, rest)| rest.split_once('`')).map(|(key, _)| key);
        let default = match key {
            Some(key) => defaults.get(key).unwrap_or_else(|| panic!("--{long} names config key `{key}`, which does not exist")).clone(),
            None if takes_value => "none".to_string(),
            None => "off".to_string(),
        };
        table += &format!("| `{flag}` | {variable} | {default} | {help} |\n");
    }
    table
}

/// The file the tables live in, relative to the repository's root.
const DOC: &str = "docs/configuration.md";

/// Compares `table` with the first table after `heading` in `DOC`; rewrites it there
/// when `HOOKLINE_UPDATE_README` is set.
fn check(heading: &str, table: &str) {
    let path = format!("{}/{DOC}", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{DOC} readable: {e}"));
    let after = doc.find(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("{DOC} has no `{heading}` heading"));
    let start = after + doc[after..].find("\n|").unwrap_or_else(|| panic!("{DOC} has no table after `{heading}`")) + 1;
    let end = doc[start..].find("\n\n").map_or(doc.len(), |at| start + at + 1);
    if doc[start..end] == *table {
        return;
    }
    if std::env::var_os(UPDATE_VAR).is_some() {
        std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap_or_else(|e| panic!("{DOC} writable: {e}"));
        return;
    }
    let got: Vec<&str> = doc[start..end].lines().collect();
    let first_difference = table.lines().zip(&got).position(|(want, got)| want != *got).unwrap_or(got.len().min(table.lines().count()));
    panic!(
        "{DOC}'s table under `{heading}` differs from the source's docs (first at its row {}).\n\
         Expected:\n\n{table}\n\
         Rewrite it with `{UPDATE_VAR}=1 cargo test --test readme_tables`, or change the `///` docs.",
        first_difference + 1
    );
}

#[test]
fn config_reference_is_rendered_from_the_config_docs() {
    check("### Config reference", &config_table());
}

#[test]
fn command_line_table_is_rendered_from_the_flags() {
    check("## Command line", &command_line_table());
}
