#!/usr/bin/env bash
# Shared set-up for scripts/serve.sh and scripts/test.sh: a project venv with evolink installed.
# Re-installs only when pyproject.toml changed, so repeated runs are fast.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "evolink needs Python >= 3.11 (found: $("$py" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=".venv/.evolink-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)-${1:-runtime}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  if [ "${1:-runtime}" = "dev" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
  else
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
  fi
  echo "$want" > "$stamp"
fi
