#!/usr/bin/env bash
# Fresh machine -> running gateway with an embedded sandbox on SQLite (offline). Extra args go to `evolink serve`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/bootstrap.sh" runtime
cd "$root"
exec .venv/bin/evolink serve --sandbox "$@"
