#!/usr/bin/env bash
# Builds the Headroom filter, installs Envoy 1.40 if needed, and runs Envoy with envoy/envoy.yaml.
#
#   envoy/run.sh                          # --concurrency 2
#   envoy/run.sh --concurrency 4 -l debug # any further arguments go to Envoy
#   HEADROOM_ENVOY=/usr/local/bin/envoy envoy/run.sh
#   HEADROOM_SKIP_BUILD=1 envoy/run.sh    # use the .wasm already built
#
# Envoy runs from the repository root because envoy.yaml names the filter by a relative path
# (target/wasm32-wasip1/wasm-release/headroom_plugin.wasm). The script execs Envoy, so the PID of
# this script is Envoy's PID; stop it with SIGTERM/SIGINT.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

if [[ -z "${HEADROOM_SKIP_BUILD:-}" ]]; then
  cargo build -p headroom-plugin --target wasm32-wasip1 --profile wasm-release
fi
WASM=target/wasm32-wasip1/wasm-release/headroom_plugin.wasm
if [[ ! -f "$WASM" ]]; then
  echo "run.sh: $WASM is missing (build it, or unset HEADROOM_SKIP_BUILD)" >&2
  exit 1
fi

if [[ -n "${HEADROOM_ENVOY:-}" ]]; then
  ENVOY="$HEADROOM_ENVOY"
else
  ENVOY="${HEADROOM_ENVOY_DIR:-$REPO_ROOT/.envoy}/bin/envoy"
  if [[ ! -x "$ENVOY" ]]; then
    "$REPO_ROOT/envoy/install.sh"
  fi
fi

# Default concurrency unless the caller passed one.
args=("$@")
has_concurrency=0
for a in "${args[@]}"; do
  case "$a" in --concurrency | --concurrency=*) has_concurrency=1 ;; esac
done
if [[ $has_concurrency -eq 0 ]]; then
  args=(--concurrency "${HEADROOM_ENVOY_CONCURRENCY:-2}" "${args[@]}")
fi

echo "run.sh: $ENVOY -c envoy/envoy.yaml ${args[*]}" >&2
echo "run.sh: listener http://127.0.0.1:10000, admin http://127.0.0.1:9901" >&2
exec "$ENVOY" -c envoy/envoy.yaml "${args[@]}"
