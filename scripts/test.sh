#!/usr/bin/env bash
# Fresh machine -> the whole test suite: installs Python deps, the pinned Baileys peer, apt tools,
# starts PostgreSQL/Redis/RabbitMQ/NATS if they are down, then runs ruff, mypy and pytest. Extra args go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

need_apt=()
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)  # the web manager's browser test (Playwright drives it)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== apt: installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "== python deps"
bash scripts/bootstrap.sh dev

echo "== npm peer (baileys, pinned)"
if [ ! -d tests/interop/node_modules/baileys ] || [ tests/interop/package-lock.json -nt tests/interop/node_modules/.package-lock.json ]; then
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "== npm: axe-core for the web manager's browser test (pinned)"
if [ ! -f tests/manager/node_modules/axe-core/axe.min.js ] || [ tests/manager/package-lock.json -nt tests/manager/node_modules/.package-lock.json ]; then
  (cd tests/manager && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "== services"
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if command -v redis-cli >/dev/null 2>&1 && ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi

# RabbitMQ and NATS (JetStream): the event transports' acceptance tests (tests/gateway/test_event_transports*.py)
if command -v rabbitmq-server >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  rabbitmq-server -detached || true
  for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 1; done
fi
if command -v nats-server >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.5; done
fi

echo "== ruff"
.venv/bin/ruff check src tests bench
echo "== mypy"
.venv/bin/mypy src/evolink
echo "== pytest"
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
