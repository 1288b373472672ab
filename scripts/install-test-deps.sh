#!/usr/bin/env bash
# Installs what the tests use: openapi-spec-validator and
# openapi-python-client in a venv, and the Debian packages, if any is missing:
#   postgresql      the PostgreSQL half of the store tests
#   sip-tester      SIPp, the SIP peer of the call tests
#   baresip-core    a second real user agent placing a call (tests/it/sip/trunks.rs)
#   kamailio        the dispatcher in front of the nodes (tests/it/sip/kamailio.rs,
#                   two_nodes.rs: deploy/kamailio/kamailio.cfg needs only its base modules)
#   docker-compose  to validate docker-compose.yml (no engine needed)
#   softhsm2        the PKCS#11 token of the HSM key store tests
#   chromium, chromium-driver, fonts-liberation, fonts-nanum  the support
#                   page test (headless, WebDriver; the fonts so screenshots
#                   show text, Korean included)
# As root it installs them; otherwise it prints the command to run.
set -euo pipefail

# openapi-spec-validator (PyPI) checks GET /openapi.json in
# tests/it/openapi.rs, and openapi-python-client generates the client that
# tests/it/openapi_client.rs drives; both live in a venv in the checkout's
# target/.
# Garage (crates.io, AGPL; a test tool only): the S3-compatible server of
# tests/it/s3.rs. `cargo install` builds it: about 12-25 minutes on 2 cores.
garage_server() {
  if ! command -v garage >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/garage" ]; then
    echo "installing garage (cargo install --locked garage, ~12-25 min)"
    cargo install --locked garage
  fi
}

validator_venv() {
  local venv
  venv="$(cd "$(dirname "$0")/.." && pwd)/target/openapi-venv"
  if [ ! -x "$venv/bin/python3" ]; then
    python3 -m venv "$venv"
  fi
  if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
    "$venv/bin/pip" install -q openapi-spec-validator
  fi
  if [ ! -x "$venv/bin/openapi-python-client" ]; then
    "$venv/bin/pip" install -q openapi-python-client
  fi
}

packages=(postgresql sip-tester baresip-core kamailio docker-compose softhsm2 chromium chromium-driver
          fonts-liberation fonts-nanum python3-venv)
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  validator_venv
  garage_server
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "missing packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
validator_venv
garage_server
