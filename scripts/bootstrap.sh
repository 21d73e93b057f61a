#!/usr/bin/env bash
# Sets mobile-opt up on a fresh Debian/Ubuntu machine: system packages, a virtualenv in .venv,
# and the package itself (editable). `--test` also installs what the test suite needs.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"

# Debian packages: Fashion-MNIST (nothing is downloaded from dataset hubs) and, for the
# tests, the real adb client/server the loopback device is checked against, chromium (the
# report test), and a PostgreSQL server (the shared-study tests start a throwaway cluster).
missing=()
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || missing+=(dataset-fashion-mnist)
if [ "$with_tests" = 1 ]; then
  command -v adb >/dev/null 2>&1 || missing+=(adb)
  command -v mksh >/dev/null 2>&1 || missing+=(mksh)
  command -v busybox >/dev/null 2>&1 || missing+=(busybox)
  # The report test renders the HTML page in a real browser (headless).
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  # Any major version (Debian 12 ships 15); the test fixture takes the newest found.
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  # --system-site-packages: reuse a TensorFlow that is already installed instead of
  # downloading 600 MB again; pip still installs whatever is missing or too old.
  "$python" -m venv --system-site-packages .venv
fi
extras=""
[ "$with_tests" = 1 ] && extras="[test,postgres]"
.venv/bin/python -m pip install --disable-pip-version-check -q -e ".${extras}"
echo "bootstrap: ready (.venv/bin/mobile-opt)"
