//! The guest ABI's codes are declared once in the gateway (`hookline::hooks::Hook`,
//! `hookline::rules::{EventField, HostError, IMPORTS, ABI_MARKERS}`); every SDK under `wasm-sdk/`
//! and `ABI.md` spells them again in its own language. These tests read each SDK's
//! source and check its hook codes and names, `event_read` field codes, host error codes,
//! raw imports and ABI version markers against the gateway's tables: nothing missing,
//! nothing extra, no wrong number.

use std::collections::BTreeSet;

use hookline::hooks::Hook;
use hookline::rules::{EventField, HostError, ABI_MARKERS, IMPORTS};

fn sdk(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("wasm-sdk").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("cannot read {}: {e}", full.display()))
}

/// `text` from the first `start` to the next `end` after it.
fn block<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text.find(start).unwrap_or_else(|| panic!("{start:?} not found"));
    let rest = &text[from + start.len()..];
    &rest[..rest.find(end).unwrap_or_else(|| panic!("{end:?} not found after {start:?}"))]
}

/// `NAME = NUMBER` pairs (enum members, constants), comments dropped.
fn assignments(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").split("/*").next().unwrap_or("");
        for piece in line.split([',', '{', '}', ';']) {
            let Some((left, right)) = piece.split_once('=') else { continue };
            let left = left.split(':').next().unwrap_or("");
            let (Some(name), Some(value)) = (left.split_whitespace().last(), right.split_whitespace().next()) else { continue };
            if value.parse::<i64>().is_ok() {
                pairs.push((name.to_string(), value.to_string()));
            }
        }
    }
    pairs
}

/// `LEFT => RIGHT` (or `LEFT: return RIGHT`) arms, trimmed of `,`, `;` and `Some(...)`.
fn arms(text: &str, arrow: &str) -> Vec<(String, String)> {
    let clean = |s: &str| {
        let s = s.trim().trim_end_matches([',', ';']).trim();
        let s = s.strip_prefix("Some(").and_then(|s| s.strip_suffix(')')).unwrap_or(s);
        s.trim_matches('"').to_string()
    };
    text.lines().filter_map(|line| line.split_once(arrow)).map(|(l, r)| (clean(l.trim().trim_start_matches("case ")), clean(r))).collect()
}

/// Each `` N `name` `` in a line of prose, as (name, N).
fn coded_names(text: &str) -> Vec<(String, String)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter_map(|w| {
            let code = w[0].trim_start_matches('|');
            let name = w[1].trim_end_matches([',', '.']).strip_prefix('`')?.strip_suffix('`')?;
            code.parse::<i64>().ok().map(|_| (name.to_string(), code.to_string()))
        })
        .collect()
}

/// Table rows `| N | `name` | ...`, as (name, N).
fn table_rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (code, name) = (cells.get(1)?, cells.get(2)?);
            code.parse::<i64>().ok()?;
            let name = name.split_whitespace().next()?.trim_matches('`');
            Some((name.to_string(), code.to_string()))
        })
        .collect()
}

/// `client.connected` -> `ClientConnected`; `client_id` -> `ClientId`.
fn camel(name: &str) -> String {
    name.split(['.', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

fn snake(name: &str) -> String {
    name.replace('.', "_")
}

fn upper(name: &str) -> String {
    snake(name).to_uppercase()
}

fn hooks(spell: impl Fn(&str) -> String) -> Vec<(String, String)> {
    Hook::ALL.iter().map(|h| (spell(h.name()), h.code().to_string())).collect()
}

fn fields(spell: impl Fn(&str) -> String) -> Vec<(String, String)> {
    EventField::ALL.iter().map(|f| (spell(f.name()), f.code().to_string())).collect()
}

fn errors(spell: impl Fn(HostError) -> String) -> Vec<(String, String)> {
    HostError::ALL.iter().map(|&e| (spell(e), e.code().to_string())).collect()
}

/// Host error codes only: an SDK numbers its own errors from -99 down.
fn host_codes(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.into_iter().filter(|(_, code)| code.parse::<i64>().is_ok_and(|c| (-98..=-1).contains(&c))).collect()
}

/// The gateway's imports as `name(params)->results`.
fn imports() -> Vec<String> {
    IMPORTS.iter().map(|(name, params, results)| format!("{name}({params})->{results}")).collect()
}

/// Compares what an SDK declares with the gateway's table; returns the differences.
struct Check {
    problems: Vec<String>,
}

impl Check {
    fn pairs(&mut self, what: &str, got: Vec<(String, String)>, want: Vec<(String, String)>) {
        let mut seen = BTreeSet::new();
        for pair in &got {
            if !seen.insert(pair) {
                self.problems.push(format!("{what}: {} = {} declared twice", pair.0, pair.1));
            }
        }
        for (name, value) in &want {
            match got.iter().find(|(n, _)| n == name) {
                None => self.problems.push(format!("{what}: missing {name} = {value}")),
                Some((_, v)) if v != value => self.problems.push(format!("{what}: {name} = {v}, the gateway says {value}")),
                Some(_) => {}
            }
        }
        for (name, value) in &got {
            if !want.iter().any(|(n, _)| n == name) {
                self.problems.push(format!("{what}: {name} = {value} is not in the gateway's table"));
            }
        }
    }

    fn set(&mut self, what: &str, got: Vec<String>, want: Vec<String>) {
        let (got, want): (BTreeSet<_>, BTreeSet<_>) = (got.into_iter().collect(), want.into_iter().collect());
        for missing in want.difference(&got) {
            self.problems.push(format!("{what}: missing {missing}"));
        }
        for extra in got.difference(&want) {
            self.problems.push(format!("{what}: {extra} is not in the gateway's table"));
        }
    }

    /// Every version marker of the gateway appears in `text` (an SDK can build each
    /// version), spelled as the export name.
    fn markers(&mut self, what: &str, text: &str) {
        for (marker, _) in ABI_MARKERS {
            if !text.contains(marker) {
                self.problems.push(format!("{what}: no way to export the version marker {marker}"));
            }
        }
    }

    fn run(body: impl FnOnce(&mut Check)) {
        let mut check = Check { problems: Vec::new() };
        body(&mut check);
        assert!(check.problems.is_empty(), "SDK out of step with the gateway's ABI tables:\n  {}", check.problems.join("\n  "));
    }
}

/// Import declarations `name(...)` with parameters counted by `param` in the
/// parameter list, and a result unless the return type is `void_word`.
fn declared_imports(decls: Vec<(String, String, String)>, void_word: &str) -> Vec<String> {
    decls
        .into_iter()
        .map(|(name, params, ret)| {
            let params = params.split(',').filter(|p| !p.trim().is_empty() && p.trim() != "void").count();
            let results = usize::from(!ret.trim().is_empty() && ret.trim() != void_word);
            format!("{name}({params})->{results}")
        })
        .collect()
}

/// `(name, params, return type)` of each `fn name(params) ret` after `marker` in `text`.
fn functions(text: &str, marker: &str, name_prefix: &str) -> Vec<(String, String, String)> {
    text.split(marker)
        .skip(1)
        .filter_map(|decl| {
            let open = decl.find('(')?;
            let close = open + decl[open..].find(')')?;
            let name = decl[..open].split_whitespace().last()?.trim_start_matches(name_prefix);
            let ret = decl[close + 1..].split([';', '{']).next()?.trim().trim_start_matches("->").trim_start_matches(':');
            Some((name.to_string(), decl[open + 1..close].to_string(), ret.trim().to_string()))
        })
        .collect()
}

#[test]
fn the_rust_sdk_declares_the_gateways_codes_and_imports() {
    let src = sdk("rust/src/lib.rs");
    Check::run(|c| {
        c.pairs("rust Hook", assignments(block(&src, "pub enum Hook {", "\n}")), hooks(camel));
        let from_code = arms(block(&src, "pub const fn from_code(code: i32) -> Option<Hook> {", "_ => None"), "=>");
        c.pairs("rust Hook::from_code", from_code.into_iter().map(|(n, v)| (v.replace("Hook::", ""), n)).collect(), hooks(camel));
        let names = arms(block(&src, "pub const fn name(self) -> &'static str {", "\n    }"), "=>");
        c.pairs(
            "rust Hook::name",
            names.into_iter().map(|(v, n)| (n, v.replace("Hook::", ""))).collect(),
            Hook::ALL.iter().map(|h| (h.name().to_string(), camel(h.name()))).collect(),
        );
        c.pairs("rust event::Field", assignments(block(&src, "pub enum Field {", "\n    }")), fields(camel));
        let from_host = arms(block(&src, "pub const fn from_host(code: i32) -> Error {", "other =>"), "=>");
        c.pairs(
            "rust Error::from_host",
            from_host.into_iter().map(|(n, v)| (v.replace("Error::", ""), n)).collect(),
            errors(|e| e.variant().into()),
        );
        let code = arms(block(&src, "pub const fn code(&self) -> i32 {", "Error::Host(0)"), "=>");
        c.pairs("rust Error::code", code.into_iter().map(|(v, n)| (v.replace("Error::", ""), n)).collect(), errors(|e| e.variant().into()));
        let externs = block(&src, "extern \"C\" {", "\n    }");
        c.set("rust sys imports", declared_imports(functions(externs, "pub fn ", ""), ""), imports());
        c.markers("rust rule!", block(&src, "macro_rules! rule {", "\n}"));
    });
}

#[test]
fn the_c_sdk_declares_the_gateways_codes_and_imports() {
    let src = sdk("c/hookline.h");
    Check::run(|c| {
        c.pairs("hookline.h hook codes", assignments(block(&src, "/* Hook codes", "};")), hooks(|n| format!("HL_{}", upper(n))));
        c.pairs(
            "hookline.h field codes",
            assignments(block(&src, "/* event_read field codes", "};")),
            fields(|n| format!("HL_FIELD_{}", upper(n))),
        );
        let errs = host_codes(assignments(block(&src, "/* Errors returned by host calls", "};")));
        c.pairs("hookline.h HL_ERR_*", errs, errors(|e| format!("HL_ERR_{}", e.constant())));
        let decls = src
            .split("HL_IMPORT(\"")
            .skip(1)
            .filter_map(|decl| {
                let (name, rest) = decl.split_once("\")")?;
                let (_, params, _) = functions(rest, "\n", "").into_iter().next()?;
                let ret = rest.split_whitespace().next()?.to_string();
                Some((name.to_string(), params, ret))
            })
            .collect();
        c.set("hookline.h imports", declared_imports(decls, "void"), imports());
        c.markers("hookline.h HOOKLINE_RULE*", block(&src, "#define HOOKLINE_RULE(", "#define HOOKLINE_RULE_MARKED_"));
    });
}

#[test]
fn the_zig_sdk_declares_the_gateways_codes_and_imports() {
    let src = sdk("zig/hookline.zig");
    Check::run(|c| {
        c.pairs("hookline.zig Hook", assignments(block(&src, "pub const Hook = enum(i32) {", "pub fn name")), hooks(snake));
        let names = arms(block(&src, "pub fn name(self: Hook) []const u8 {", "};"), "=>");
        c.pairs(
            "hookline.zig Hook.name",
            names.into_iter().map(|(v, n)| (n, v.trim_start_matches('.').to_string())).collect(),
            Hook::ALL.iter().map(|h| (h.name().to_string(), snake(h.name()))).collect(),
        );
        c.pairs("hookline.zig Field", assignments(block(&src, "pub const Field = enum(i32) {", "};")), fields(snake));
        let check = arms(block(&src, "fn check(rc: i32) Error!u32 {", "else =>"), "=>");
        c.pairs(
            "hookline.zig check",
            check.into_iter().map(|(n, v)| (v.replace("error.", ""), n)).collect(),
            errors(|e| e.variant().into()),
        );
        let codes = arms(block(&src, "pub fn errorCode(e: Error) i32 {", "};"), "=>");
        let codes = host_codes(codes.into_iter().map(|(v, n)| (v.replace("error.", ""), n)).collect());
        c.pairs("hookline.zig errorCode", codes, errors(|e| e.variant().into()));
        let raw = block(&src, "pub const raw = struct {", "};");
        let decls = functions(raw, "pub extern \"hookline\" fn ", "");
        c.set("hookline.zig raw imports", declared_imports(decls, "void"), imports());
        c.markers("hookline.zig exportRule*", block(&src, "fn exportRuleAbi(", "\n}"));
    });
}

#[test]
fn the_assemblyscript_sdk_declares_the_gateways_codes_and_imports() {
    let src = sdk("assemblyscript/assembly/index.ts");
    Check::run(|c| {
        c.pairs("index.ts Hook", assignments(block(&src, "export enum Hook {", "}")), hooks(camel));
        let names = arms(block(&src, "export function hookName(hook: Hook): string {", "default:"), ": return ");
        c.pairs(
            "index.ts hookName",
            names.into_iter().map(|(v, n)| (n, v.replace("Hook.", ""))).collect(),
            Hook::ALL.iter().map(|h| (h.name().to_string(), camel(h.name()))).collect(),
        );
        c.pairs("index.ts Field", assignments(block(&src, "export enum Field {", "}")), fields(camel));
        let consts: Vec<_> = src.lines().filter(|l| l.starts_with("export const ERR_")).flat_map(assignments).collect();
        c.pairs("index.ts ERR_*", host_codes(consts), errors(|e| format!("ERR_{}", e.constant())));
        let decls = src
            .split("@external(\"hookline\", \"")
            .skip(1)
            .filter_map(|decl| {
                let (name, rest) = decl.split_once('"')?;
                let f = functions(rest, "export declare function ", "").into_iter().next()?;
                Some((name.to_string(), f.1, f.2))
            })
            .collect();
        c.set("index.ts imports", declared_imports(decls, "void"), imports());
        let exported: String = src.lines().filter(|l| l.starts_with("export function hookline_abi_v")).collect();
        c.markers("index.ts marker functions", &exported);
    });
    let entry = sdk("assemblyscript/index.ts");
    assert!(entry.contains("export * from \"./assembly/index\""), "assemblyscript/index.ts must re-export assembly/index.ts");
}

#[test]
fn the_wat_guide_lists_the_gateways_codes_and_imports() {
    let src = sdk("wat/README.md");
    Check::run(|c| {
        c.pairs("wat/README.md hooks", coded_names(block(&src, "- **Hooks**", "\n- ")), hooks(|n| n.to_string()));
        c.pairs("wat/README.md fields", coded_names(block(&src, "Fields:", "So check")), fields(|n| n.to_string()));
        let errs = block(&src, "- **Errors** (negative results):", "-5/-6/-7 from");
        let codes = errs.split_whitespace().filter(|w| w.parse::<i64>().is_ok()).map(str::to_string).collect();
        c.set("wat/README.md error codes", codes, HostError::ALL.iter().map(|e| e.code().to_string()).collect());
        let decls = block(&src, "only these (import just the ones you", "```\n\n")
            .split("(import \"hookline\" \"")
            .skip(1)
            .filter_map(|decl| {
                let (name, rest) = decl.split_once('"')?;
                Some(format!("{name}({})->{}", rest.matches("(param").count(), rest.matches("(result").count()))
            })
            .collect();
        c.set("wat/README.md imports", decls, imports());
        c.markers("wat/README.md exports table", block(&src, "## What the module must have", "Imports may come"));
    });
}

#[test]
fn abi_md_tables_are_the_gateways() {
    let src = sdk("ABI.md");
    Check::run(|c| {
        c.pairs("ABI.md hook codes", table_rows(block(&src, "Hook codes:", "## Host imports")), hooks(|n| n.to_string()));
        c.pairs("ABI.md event_read fields", table_rows(block(&src, "`event_read` field codes:", "### Errors")), fields(|n| n.to_string()));
        let errs = block(&src, "### Errors returned by host calls", "A `route`");
        let codes = errs
            .lines()
            .filter_map(|l| l.split('|').nth(1))
            .map(str::trim)
            .filter(|c| c.parse::<i64>().is_ok())
            .map(str::to_string)
            .collect();
        c.set("ABI.md error codes", codes, HostError::ALL.iter().map(|e| e.code().to_string()).collect());
        let rows = block(&src, "## Host imports", "`event_read` field codes:")
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let sig = cells.get(2)?.trim_matches('`');
                let (params, ret) = sig.split_once("->")?;
                let params = params.trim().trim_start_matches('(').trim_end_matches(')');
                let params = params.split(',').filter(|p| !p.trim().is_empty()).count();
                Some(format!("{name}({params})->{}", usize::from(ret.trim() != "()")))
            })
            .collect();
        c.set("ABI.md imports", rows, imports());
    });
}
