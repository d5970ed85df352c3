//! `hookline rule new LANG NAME`: a rule project that builds as is, anywhere.
//!
//! The SDK of the language is copied into the project (it is a few hundred lines and
//! has no dependencies), so the project does not depend on where hookline was built.
//! The rule routes `message.publish` on `devices/+/state` to the Kafka topic NAME; the
//! project's README says how to build and test it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Lang {
    Rust,
    C,
    Assemblyscript,
    Zig,
    Wat,
}

const RUST_SDK_MANIFEST: &str = include_str!("../../wasm-sdk/rust/Cargo.toml");
const RUST_SDK: &str = include_str!("../../wasm-sdk/rust/src/lib.rs");
const C_SDK: &str = include_str!("../../wasm-sdk/c/hookline.h");
const AS_SDK: &str = include_str!("../../wasm-sdk/assemblyscript/assembly/index.ts");
const ZIG_SDK: &str = include_str!("../../wasm-sdk/zig/hookline.zig");

/// Creates `dir/name/` for a rule in `lang`; refuses to overwrite anything.
pub fn create(lang: Lang, name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        bail!("rule name {name:?}: use lower-case letters, digits and `_` (it names the module, the crate and the Kafka topic)");
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} already exists; choose another name or --dir", root.display());
    }
    let (files, build) = files(lang, name);
    let module = match lang {
        Lang::Wat => format!("{name}.wat"),
        _ => format!("{name}.wasm"),
    };
    for (path, content) in &files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("files live under the project root"))
            .with_context(|| format!("cannot create {}", root.display()))?;
        std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let readme = format!(
        "# {name}\n\nA hookline rule: `message.publish` on `devices/+/state` goes to the Kafka topic \
         `{name}`, keyed by the client id.\n\nBuild (the script names a missing compiler or target, and how to install it):\n\n```sh\n./build.sh\n```\n\nTry it on the door-lock \
         scenario's events, then drop it into the gateway's rules directory:\n\n```sh\nhookline rule test {module}\n```\n\n\
         The guest ABI is described in hookline's `wasm-sdk/ABI.md`.\n"
    );
    std::fs::write(root.join("README.md"), readme)?;
    let script = root.join("build.sh");
    let check = toolchain_check(lang);
    std::fs::write(
        &script,
        format!("#!/bin/sh\n# Builds {name}.wasm in this directory.\nset -e\ncd \"$(dirname \"$0\")\"\n{check}{build}\n"),
    )?;
    make_executable(&script)?;
    Ok(root)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

/// The build script's first lines: a missing compiler or target is named, with the
/// command that installs it, before the build fails on it.
fn toolchain_check(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => {
            "command -v cargo >/dev/null || { echo \"build.sh: no cargo: install Rust with rustup, or Debian's cargo and libstd-rust-dev-wasm32\" >&2; exit 1; }\n\
             if [ ! -d \"$(${RUSTC:-rustc} --print sysroot)/lib/rustlib/wasm32-unknown-unknown\" ]; then\n  \
             echo \"build.sh: this Rust has no wasm32-unknown-unknown target: rustup target add wasm32-unknown-unknown (Debian's Rust: apt-get install libstd-rust-dev-wasm32)\" >&2\n  exit 1\nfi\n"
        }
        // Debian names its clang by version; any clang with the WebAssembly backend does.
        Lang::C => {
            "if [ -z \"${CC:-}\" ]; then\n  for cc in clang clang-19 clang-18 clang-17 clang-16 clang-15 clang-14; do\n    \
             if command -v \"$cc\" >/dev/null; then CC=$cc; break; fi\n  done\nfi\n\
             [ -n \"${CC:-}\" ] || { echo \"build.sh: no clang: apt-get install clang lld (or set CC)\" >&2; exit 1; }\n"
        }
        Lang::Assemblyscript => {
            "command -v npm >/dev/null || { echo \"build.sh: no npm: apt-get install nodejs npm\" >&2; exit 1; }\n"
        }
        Lang::Zig => {
            "python3 -m ziglang version >/dev/null 2>&1 || { echo \"build.sh: no Zig: pip install ziglang (PyPI's Zig, run as python3 -m ziglang)\" >&2; exit 1; }\n"
        }
        Lang::Wat => "",
    }
}

/// The project's files and its build command.
fn files(lang: Lang, name: &str) -> (Vec<(String, String)>, String) {
    match lang {
        Lang::Rust => (
            vec![
                ("Cargo.toml".into(), format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
                     [dependencies]\nhookline-rule = {{ path = \"sdk\" }}\n\n[profile.release]\nopt-level = \"s\"\nlto = true\n\
                     panic = \"abort\"\ncodegen-units = 1\n\n[workspace]\n"
                )),
                // The copied SDK is a member of this project's workspace, not a root.
                ("sdk/Cargo.toml".into(), RUST_SDK_MANIFEST.replace("\n[workspace]\n", "\n")),
                ("sdk/src/lib.rs".into(), RUST_SDK.into()),
                ("src/lib.rs".into(), format!(
                    "//! hookline rule `{name}`.\n#![no_std]\n\nuse hookline_rule::{{route, subscribe, Error, Event, Hook}};\n\n\
                     fn init() -> Result<(), Error> {{\n    subscribe(Hook::MessagePublish, \"devices/+/state\")?;\n    Ok(())\n}}\n\n\
                     fn on_event(_event: &Event) -> Result<(), Error> {{\n    \
                     // A field of the JSON payload: hookline_rule::payload_f64(\"battery\")? (also payload_bool,\n    \
                     // payload_str, payload_json; paths like \"lock.state\" or \"readings[0]\").\n    \
                     route(\"{name}\")?;\n    Ok(())\n}}\n\n\
                     hookline_rule::rule! {{ init => init, on_event => on_event }}\n"
                )),
            ],
            format!("cargo build --release --target wasm32-unknown-unknown\ncp target/wasm32-unknown-unknown/release/{name}.wasm ."),
        ),
        Lang::C => (
            vec![
                ("hookline.h".into(), C_SDK.into()),
                (format!("{name}.c"), format!(
                    "/* hookline rule {name}. */\n#include \"hookline.h\"\n\nstatic int32_t init(void) {{\n    \
                     return hl_subscribe(\"message.publish\", \"devices/+/state\");\n}}\n\n\
                     static int32_t on_event(int32_t hook, int32_t subscription) {{\n    (void)hook;\n    (void)subscription;\n    \
                     /* A field of the JSON payload: double battery; hl_payload_f64(\"battery\", &battery) (0 or a\n     \
                     * negative error; also hl_payload_bool, hl_payload_str, hl_payload_json). */\n    \
                     return hl_route(\"{name}\");\n}}\n\nHOOKLINE_RULE(init, on_event)\n"
                )),
            ],
            format!("\"$CC\" --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin -I. -Wl,--no-entry -Wl,--strip-all -o {name}.wasm {name}.c"),
        ),
        Lang::Assemblyscript => (
            vec![
                ("hookline.ts".into(), AS_SDK.into()),
                (format!("{name}.ts"), format!(
                    "// hookline rule {name}.\nimport {{ Hook, subscribe, route, ok }} from \"./hookline\";\n\
                     export {{ hookline_abi_v2 }} from \"./hookline\";\n\nexport function hookline_init(): i32 {{\n  \
                     return ok(subscribe(Hook.MessagePublish, \"devices/+/state\"));\n}}\n\n\
                     export function hookline_on_event(hook: i32, subscription: i32): i32 {{\n  return ok(route(\"{name}\"));\n}}\n"
                )),
                ("package.json".into(), format!(
                    "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"devDependencies\": {{ \"assemblyscript\": \"0.28.20\" }}\n}}\n"
                )),
            ],
            format!("npm install\nnpx asc {name}.ts --runtime stub -O3z --noAssert --use abort= -o {name}.wasm"),
        ),
        Lang::Zig => (
            vec![
                ("hookline.zig".into(), ZIG_SDK.into()),
                (format!("{name}.zig"), format!(
                    "//! hookline rule {name}.\nconst hl = @import(\"hookline\");\n\nfn init() hl.Error!void {{\n    \
                     _ = try hl.subscribe(.message_publish, \"devices/+/state\");\n}}\n\n\
                     fn onEvent(hook: hl.Hook, subscription: u32) hl.Error!void {{\n    _ = hook;\n    _ = subscription;\n    \
                     _ = try hl.route(\"{name}\");\n}}\n\ncomptime {{\n    hl.exportRule(init, onEvent);\n}}\n"
                )),
            ],
            format!(
                "python3 -m ziglang build-exe -target wasm32-freestanding -fno-entry -O ReleaseSmall -fstrip \\\n  \
                 --export=hookline_abi_v2 --export=hookline_init --export=hookline_on_event --stack 65536 \\\n  \
                 --dep hookline -Mroot={name}.zig -Mhookline=hookline.zig -femit-bin={name}.wasm"
            ),
        ),
        Lang::Wat => (
            vec![(format!("{name}.wat"), format!(
                "(module\n  ;; hookline rule {name}: message.publish on devices/+/state -> Kafka topic {name}.\n  \
                 (import \"hookline\" \"subscribe\" (func $subscribe (param i32 i32 i32 i32) (result i32)))\n  \
                 (import \"hookline\" \"route\" (func $route (param i32 i32 i32 i32) (result i32)))\n  \
                 (memory (export \"memory\") 1)\n  (data (i32.const 0) \"message.publish\")\n  \
                 (data (i32.const 16) \"devices/+/state\")\n  (data (i32.const 32) \"{name}\")\n  \
                 (func (export \"hookline_abi_v2\"))\n  (func (export \"hookline_init\") (result i32)\n    \
                 ;; subscribe returns the subscription's index (>= 0) or a negative error;\n    \
                 ;; shifting the sign bit across gives -1 (refuse loading) or 0.\n    \
                 (i32.shr_s (call $subscribe (i32.const 0) (i32.const 15) (i32.const 16) (i32.const 15)) (i32.const 31)))\n  \
                 (func (export \"hookline_on_event\") (param $hook i32) (param $sub i32) (result i32)\n    \
                 ;; route returns the route's index (>= 0) or a negative error: -1 rejects (ABI v2).\n    \
                 (i32.shr_s (call $route (i32.const 32) (i32.const {len}) (i32.const 0) (i32.const -1)) (i32.const 31))))\n",
                len = name.len()
            ))],
            "# nothing to build: the gateway compiles WebAssembly text itself\ntrue".to_string(),
        ),
    }
}
