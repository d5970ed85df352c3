#!/usr/bin/env bash
# Rebuilds every Rust rule crate under rules/src/*/ into OUT_DIR/<dir name>.wasm.
#
#   rules/build.sh [OUT_DIR]      OUT_DIR defaults to rules/ itself
#
# Toolchain, first one that works (override with HOOKLINE_RULES_TOOLCHAIN=rustup|debian):
#   1. rustup's default toolchain with the wasm32-unknown-unknown target
#      (`rustup target add` is tried if the target is missing);
#   2. Debian's /usr/bin/cargo + /usr/bin/rustc with libstd-rust-dev-wasm32
#      (installed with apt-get when missing and running as root).
# Exits non-zero with a message naming what is missing when neither can be had.
#
# Cargo's target dir stays outside the tree: $CARGO_TARGET_DIR if set, else
# /tmp/hookline-rules-target/<toolchain>. The checkout path is remapped out of the
# modules, so the bytes do not depend on where the repository is cloned; they do
# depend on the toolchain (compare rebuilt modules by behaviour, not by bytes, when
# the toolchain may differ).
set -euo pipefail

TARGET=wasm32-unknown-unknown
RULES_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$RULES_DIR/.." && pwd)
OUT_DIR=${1:-$RULES_DIR}
CHOICE=${HOOKLINE_RULES_TOOLCHAIN:-auto}

note() { echo "rules/build.sh: $*" >&2; }
die() {
    echo "rules/build.sh: error: $*" >&2
    exit 1
}

# has_wasm_std RUSTC: does this rustc's sysroot hold the wasm32-unknown-unknown std?
has_wasm_std() {
    local sysroot
    sysroot=$("$1" --print sysroot 2>/dev/null) || return 1
    compgen -G "$sysroot/lib/rustlib/$TARGET/lib/libcore-*.rlib" >/dev/null
}

try_rustup() {
    if ! command -v rustup >/dev/null 2>&1; then
        note "rustup: not installed"
        return 1
    fi
    local rustc cargo
    if ! rustc=$(rustup which rustc 2>/dev/null) || ! cargo=$(rustup which cargo 2>/dev/null); then
        note "rustup: no usable default toolchain"
        return 1
    fi
    if ! has_wasm_std "$rustc"; then
        note "rustup: adding target $TARGET"
        timeout 300 rustup target add "$TARGET" >&2 || true
        if ! has_wasm_std "$rustc"; then
            note "rustup: target $TARGET is not installed and could not be added"
            return 1
        fi
    fi
    RUSTC_BIN=$rustc
    CARGO_BIN=$cargo
    TOOLCHAIN=rustup
}

try_debian() {
    local rustc=/usr/bin/rustc cargo=/usr/bin/cargo
    local packages=(rustc cargo libstd-rust-dev-wasm32)
    if ! [ -x "$cargo" ] || ! [ -x "$rustc" ] || ! has_wasm_std "$rustc"; then
        if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
            note "debian: ${packages[*]} not installed, and cannot install them (needs root and apt-get)"
            return 1
        fi
        note "debian: installing ${packages[*]} with apt-get"
        # Recommends stay on: they bring lld, the linker rustc uses for wasm32.
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}" >&2; then
            DEBIAN_FRONTEND=noninteractive apt-get update >&2 || true
            if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}" >&2; then
                note "debian: apt-get install ${packages[*]} failed"
                return 1
            fi
        fi
        if ! [ -x "$cargo" ] || ! has_wasm_std "$rustc"; then
            note "debian: still no cargo or $TARGET std after installing"
            return 1
        fi
    fi
    RUSTC_BIN=$rustc
    CARGO_BIN=$cargo
    TOOLCHAIN=debian
}

case "$CHOICE" in
    auto) try_rustup || try_debian ||
        die "no Rust toolchain for $TARGET: install rustup and run 'rustup target add $TARGET', or (as root on Debian) 'apt-get install rustc cargo libstd-rust-dev-wasm32'" ;;
    rustup) try_rustup || die "HOOKLINE_RULES_TOOLCHAIN=rustup, but rustup's $TARGET toolchain is unavailable" ;;
    debian) try_debian || die "HOOKLINE_RULES_TOOLCHAIN=debian, but Debian's $TARGET toolchain is unavailable" ;;
    *) die "HOOKLINE_RULES_TOOLCHAIN must be auto, rustup or debian, not '$CHOICE'" ;;
esac

echo "rules/build.sh: toolchain: $TOOLCHAIN ($("$RUSTC_BIN" --version), $("$CARGO_BIN" --version))"

TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/hookline-rules-target/$TOOLCHAIN}
mkdir -p "$OUT_DIR" "$TARGET_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

# Keep the checkout path out of the modules (panic locations would embed it). Given as
# build.rustflags, so RUSTFLAGS or a rule's own [target] rustflags still take precedence.
case "$REPO_ROOT" in
    *[[:space:]]*) note "checkout path has whitespace; not remapping it" ;;
    *) export CARGO_BUILD_RUSTFLAGS="${CARGO_BUILD_RUSTFLAGS:-} --remap-path-prefix=$REPO_ROOT=/hookline" ;;
esac

# lib_name MANIFEST: the cdylib's file stem ([lib] name, else [package] name, '-' -> '_').
lib_name() {
    awk '
        /^[[:space:]]*\[/ { section = $0; gsub(/[[:space:]]/, "", section); next }
        /^[[:space:]]*name[[:space:]]*=/ {
            value = $0
            sub(/^[^=]*=[[:space:]]*"/, "", value)
            sub(/".*$/, "", value)
            if (section == "[lib]") lib = value
            else if (section == "[package]") pkg = value
        }
        END { name = (lib != "") ? lib : pkg; gsub(/-/, "_", name); print name }
    ' "$1"
}

shopt -s nullglob
manifests=("$RULES_DIR"/src/*/Cargo.toml)
if [ ${#manifests[@]} -eq 0 ]; then
    echo "rules/build.sh: no Rust rule crates under $RULES_DIR/src/"
    exit 0
fi

for manifest in "${manifests[@]}"; do
    crate_dir=$(dirname "$manifest")
    name=$(basename "$crate_dir")
    stem=$(lib_name "$manifest")
    [ -n "$stem" ] || die "$manifest: no package name"
    # Run from the crate's directory so its own .cargo/config.toml, if any, applies.
    (cd "$crate_dir" && RUSTC="$RUSTC_BIN" "$CARGO_BIN" build --release --target "$TARGET" \
        --target-dir "$TARGET_DIR") || die "building $name failed"
    built="$TARGET_DIR/$TARGET/release/$stem.wasm"
    [ -f "$built" ] || die "$name: $built not produced (is its crate-type [\"cdylib\"]?)"
    # Copy then rename, so a watcher of OUT_DIR never sees a half-written module.
    tmp="$OUT_DIR/.$name.wasm.tmp"
    cp "$built" "$tmp"
    chmod 644 "$tmp"
    mv -f "$tmp" "$OUT_DIR/$name.wasm"
    echo "rules/build.sh: $OUT_DIR/$name.wasm ($(wc -c <"$OUT_DIR/$name.wasm") bytes)"
done
