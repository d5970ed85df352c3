#!/usr/bin/env bash
# Builds every example rule of rules/examples/<language>/ with that language's own
# toolchain, to show (and let tests/it/conformance.rs check) that rules can be written in
# any language that compiles to a core WebAssembly module.
#
#   rules/examples/build.sh OUT_DIR
#
# Writes OUT_DIR/<lang>/<rule>.wasm (WAT is copied as OUT_DIR/wat/<rule>.wat: the host
# compiles text itself) and OUT_DIR/manifest.txt, one line per module built and one per
# language that could not be built:
#
#   built <lang> <rule> <bytes>
#   skipped <lang> <reason>
#   failed <lang> <rule> <reason>
#
# Toolchains, installed when missing (apt-get needs root; the rest goes to a cache dir,
# $HOOKLINE_TOOLS_DIR, default ~/.cache/hookline-toolchains, never into the tree):
#   rust            rustup's toolchain + wasm32-unknown-unknown (`rustup target add`), else
#                   Debian's rustc/cargo + libstd-rust-dev-wasm32 (as rules/build.sh;
#                   HOOKLINE_RULES_TOOLCHAIN=rustup|debian picks one)
#   c               Debian's clang-14 + lld-14 (apt-get)
#   assemblyscript  node + npm (Debian's nodejs/npm with apt-get if missing), then the
#                   npm package assemblyscript@$HOOKLINE_ASC_VERSION into the cache dir
#   zig             the PyPI package ziglang==$HOOKLINE_ZIG_VERSION, pip-installed into
#                   the cache dir and run as `python3 -m ziglang`
#   wat             nothing
# A toolchain that cannot be had is reported as `skipped <lang> <reason>`, never passed
# silently: tests/it/conformance.rs fails on it unless HOOKLINE_CONFORMANCE_ALLOW_SKIP
# (set in .ci/run) allows that language with a reason. The exit status is non-zero only
# when an installed toolchain fails to build an example (its modules are then listed as
# `failed`).
set -uo pipefail

ASC_VERSION=${HOOKLINE_ASC_VERSION:-0.28.20}
ZIG_VERSION=${HOOKLINE_ZIG_VERSION:-0.17.1}
WASM_TARGET=wasm32-unknown-unknown

EXAMPLES=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$EXAMPLES/../.." && pwd)
SDK=$REPO_ROOT/wasm-sdk

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: rules/examples/build.sh OUT_DIR" >&2
    exit 2
fi
mkdir -p "$1" || exit 2
OUT_DIR=$(cd "$1" && pwd)
TOOLS=${HOOKLINE_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hookline-toolchains}
mkdir -p "$TOOLS" || exit 2
MANIFEST=$OUT_DIR/manifest.txt
: >"$MANIFEST.tmp"
FAILED=0

note() { echo "rules/examples/build.sh: $*" >&2; }
skip() { # skip LANG REASON...
    local lang=$1
    shift
    note "$lang: skipped: $*"
    echo "skipped $lang $*" >>"$MANIFEST.tmp"
}
# record LANG RULE BUILT_FILE EXT: puts a freshly built module in place, lists it.
record() {
    local lang=$1 rule=$2 built=$3 ext=$4 dest
    dest=$OUT_DIR/$lang/$rule.$ext
    mkdir -p "$OUT_DIR/$lang"
    # Copy then rename, so nobody sees a half-written module.
    cp "$built" "$dest.tmp" && chmod 644 "$dest.tmp" && mv -f "$dest.tmp" "$dest" || {
        fail "$lang" "$rule" "cannot write $dest"
        return
    }
    local size
    size=$(wc -c <"$dest" | tr -d ' ')
    note "$lang: $dest ($size bytes)"
    echo "built $lang $rule $size" >>"$MANIFEST.tmp"
}
fail() { # fail LANG RULE REASON...
    local lang=$1 rule=$2
    shift 2
    note "$lang: $rule: FAILED: $*"
    echo "failed $lang $rule $*" >>"$MANIFEST.tmp"
    FAILED=1
}

is_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }
APT_UPDATED=0
# apt_install PKG...: as root, installs Debian packages (refreshing the index once if
# the first try fails). Returns non-zero when it cannot.
apt_install() {
    is_root || return 1
    note "apt-get install $*"
    if ! DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "$@" >&2; then
        if [ $APT_UPDATED = 0 ]; then
            APT_UPDATED=1
            DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq >&2 || true
        fi
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "$@" >&2 || return 1
    fi
}

# rule names of a language: the example files' stems (seed, battery_alarm, ...)
rules_of() { # rules_of DIR EXT
    local f
    for f in "$1"/*."$2"; do
        [ -e "$f" ] && basename "$f" ".$2"
    done
}

# ---- rust ----------------------------------------------------------------------------
has_wasm_std() {
    local sysroot
    sysroot=$("$1" --print sysroot 2>/dev/null) || return 1
    compgen -G "$sysroot/lib/rustlib/$WASM_TARGET/lib/libcore-*.rlib" >/dev/null
}
rust_toolchain() { # sets RUSTC_BIN CARGO_BIN RUST_KIND, or RUST_WHY
    local choice=${HOOKLINE_RULES_TOOLCHAIN:-auto} rustc cargo
    if [ "$choice" != debian ] && command -v rustup >/dev/null 2>&1 &&
        rustc=$(rustup which rustc 2>/dev/null) && cargo=$(rustup which cargo 2>/dev/null); then
        if ! has_wasm_std "$rustc"; then
            note "rust: rustup target add $WASM_TARGET"
            timeout 300 rustup target add "$WASM_TARGET" >&2 || true
        fi
        if has_wasm_std "$rustc"; then
            RUSTC_BIN=$rustc CARGO_BIN=$cargo RUST_KIND=rustup
            return 0
        fi
    fi
    [ "$choice" = rustup ] && { RUST_WHY="rustup's $WASM_TARGET target is unavailable"; return 1; }
    rustc=/usr/bin/rustc cargo=/usr/bin/cargo
    if ! [ -x "$cargo" ] || ! has_wasm_std "$rustc"; then
        # Recommends stay on: they bring lld, the linker rustc uses for wasm32.
        apt_install rustc cargo libstd-rust-dev-wasm32 || true
    fi
    if [ -x "$cargo" ] && has_wasm_std "$rustc"; then
        RUSTC_BIN=$rustc CARGO_BIN=$cargo RUST_KIND=debian
        return 0
    fi
    RUST_WHY="no Rust toolchain with $WASM_TARGET: needs rustup (rustup target add $WASM_TARGET) or, as root, apt-get install rustc cargo libstd-rust-dev-wasm32"
    return 1
}

build_rust() {
    local RUSTC_BIN CARGO_BIN RUST_KIND RUST_WHY=""
    if ! rust_toolchain; then
        skip rust "$RUST_WHY"
        return
    fi
    note "rust: $("$RUSTC_BIN" --version)"
    local target_dir=${CARGO_TARGET_DIR:-$TOOLS/rust-target}/$RUST_KIND
    local flags=${CARGO_BUILD_RUSTFLAGS:-}
    case "$REPO_ROOT" in
        *[[:space:]]*) ;;
        *) flags="$flags --remap-path-prefix=$REPO_ROOT=/hookline" ;;
    esac
    local manifest crate rule stem
    for manifest in "$EXAMPLES"/rust/*/Cargo.toml; do
        [ -e "$manifest" ] || continue
        crate=$(dirname "$manifest")
        rule=$(basename "$crate")
        stem=example_$rule
        if (cd "$crate" && CARGO_BUILD_RUSTFLAGS="$flags" RUSTC="$RUSTC_BIN" "$CARGO_BIN" build -q --release \
            --target "$WASM_TARGET" --target-dir "$target_dir") >&2 &&
            [ -f "$target_dir/$WASM_TARGET/release/$stem.wasm" ]; then
            record rust "$rule" "$target_dir/$WASM_TARGET/release/$stem.wasm" wasm
        else
            fail rust "$rule" "cargo build failed (crate must be named $stem, crate-type cdylib)"
        fi
    done
}

# ---- c -------------------------------------------------------------------------------
build_c() {
    local cc=clang-14
    if ! command -v clang-14 >/dev/null 2>&1 || ! command -v wasm-ld-14 >/dev/null 2>&1; then
        apt_install clang-14 lld-14 || true
    fi
    if ! command -v clang-14 >/dev/null 2>&1 || ! command -v wasm-ld-14 >/dev/null 2>&1; then
        skip c "clang-14 and lld-14 not installed and cannot be installed (needs root and apt-get)"
        return
    fi
    note "c: $($cc --version | head -1)"
    local rule tmp
    tmp=$(mktemp -d) || return
    for rule in $(rules_of "$EXAMPLES/c" c); do
        if $cc --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin -Wall -Wextra \
            -I"$SDK/c" -Wl,--no-entry -Wl,--strip-all \
            -o "$tmp/$rule.wasm" "$EXAMPLES/c/$rule.c" >&2; then
            record c "$rule" "$tmp/$rule.wasm" wasm
        else
            fail c "$rule" "clang-14 failed"
        fi
    done
    rm -rf "$tmp"
}

# ---- assemblyscript --------------------------------------------------------------------
build_assemblyscript() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        apt_install nodejs npm || true
    fi
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        skip assemblyscript "node and npm not installed and cannot be installed (needs root and apt-get)"
        return
    fi
    local prefix=$TOOLS/assemblyscript-$ASC_VERSION
    local asc=$prefix/node_modules/.bin/asc
    if ! [ -x "$asc" ]; then
        note "assemblyscript: npm install assemblyscript@$ASC_VERSION into $prefix"
        mkdir -p "$prefix"
        if ! (cd "$prefix" && timeout 600 npm install --prefix "$prefix" --no-audit --no-fund \
            --no-save "assemblyscript@$ASC_VERSION") >&2 || ! [ -x "$asc" ]; then
            skip assemblyscript "npm install assemblyscript@$ASC_VERSION failed"
            return
        fi
    fi
    note "assemblyscript: asc $("$asc" --version 2>/dev/null | head -1) on node $(node --version)"
    local rule tmp
    tmp=$(mktemp -d) || return
    for rule in $(rules_of "$EXAMPLES/assemblyscript" ts); do
        # --use abort= : no env.abort import (the host allows only `hookline` imports).
        if (cd "$EXAMPLES/assemblyscript" && "$asc" "$rule.ts" --runtime stub -O3z --noAssert \
            --use abort= -o "$tmp/$rule.wasm") >&2; then
            record assemblyscript "$rule" "$tmp/$rule.wasm" wasm
        else
            fail assemblyscript "$rule" "asc failed"
        fi
    done
    rm -rf "$tmp"
}

# ---- zig -------------------------------------------------------------------------------
build_zig() {
    if ! command -v python3 >/dev/null 2>&1; then
        apt_install python3 python3-pip || true
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        skip zig "python3 not installed and cannot be installed"
        return
    fi
    local site=$TOOLS/ziglang-$ZIG_VERSION
    zig_run() { PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" python3 -m ziglang "$@"; }
    if ! zig_run version >/dev/null 2>&1; then
        if ! python3 -m pip --version >/dev/null 2>&1; then
            apt_install python3-pip || true
        fi
        note "zig: pip install ziglang==$ZIG_VERSION into $site"
        rm -rf "$site"
        # --target keeps it out of every Python environment; Debian's own python3 still
        # wants --break-system-packages for that, which older pips do not know.
        timeout 600 python3 -m pip install -q --disable-pip-version-check --target "$site" \
            "ziglang==$ZIG_VERSION" >&2 ||
            timeout 600 python3 -m pip install -q --disable-pip-version-check --break-system-packages \
                --target "$site" "ziglang==$ZIG_VERSION" >&2 || true
        if ! zig_run version >/dev/null 2>&1; then
            skip zig "pip install ziglang==$ZIG_VERSION failed (needs python3 with pip)"
            return
        fi
    fi
    note "zig: $(zig_run version)"
    local rule tmp
    tmp=$(mktemp -d) || return
    for rule in $(rules_of "$EXAMPLES/zig" zig); do
        if (cd "$EXAMPLES/zig" && zig_run build-exe -target wasm32-freestanding -fno-entry -O ReleaseSmall \
            -fstrip --stack 65536 \
            -rdynamic \
            --cache-dir "$TOOLS/zig-cache" --global-cache-dir "$TOOLS/zig-global-cache" \
            --dep hookline "-Mroot=$rule.zig" "-Mhookline=$SDK/zig/hookline.zig" \
            -femit-bin="$tmp/$rule.wasm") >&2; then
            record zig "$rule" "$tmp/$rule.wasm" wasm
        else
            fail zig "$rule" "zig build-exe failed"
        fi
    done
    rm -rf "$tmp"
}

# ---- wat -------------------------------------------------------------------------------
build_wat() {
    local rule
    for rule in $(rules_of "$EXAMPLES/wat" wat); do
        record wat "$rule" "$EXAMPLES/wat/$rule.wat" wat
    done
}

for lang in rust c assemblyscript zig wat; do
    "build_$lang"
done

mv -f "$MANIFEST.tmp" "$MANIFEST"
echo "rules/examples/build.sh: wrote $MANIFEST:"
sed 's/^/  /' "$MANIFEST"
exit $FAILED
