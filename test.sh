#!/usr/bin/env bash
# Install and run the whole test suite (lint included). Extra arguments go to pytest.
# Uses DATABASE_URL / REDIS_URL when set (CI: PostgreSQL and Redis), else SQLite and the
# embedded SQLite broker.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt -r requirements-torch.txt
.venv/bin/ruff check .
.venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
# The fast lane (-m "not slow") runs in two processes (pytest-xdist) unless -n is given; the whole
# suite runs in one, since its worker and browser tests start processes of their own.
args=("$@")
if [[ " $* " == *"not slow"* && " $* " != *" -n "* ]]; then
    args=(-n 2 "${args[@]}")
fi
.venv/bin/python -m pytest "${args[@]}"
