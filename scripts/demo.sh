#!/usr/bin/env bash
# The demo: SQLite (testproject/db.sqlite3), the admin at http://127.0.0.1:8000/admin/ (admin / admin),
# a worker running the example jobs. Ctrl-C stops the server and the worker.
#
#   ADDR=127.0.0.1:8001 scripts/demo.sh     serve on another address
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ADDR="${ADDR:-127.0.0.1:8000}"

VENVS=".venv" DBS="sqlite" "$REPO/scripts/bootstrap.sh"

cd "$REPO/testproject"
PY="$REPO/.venv/bin/python"
unset DATABASE_URL  # the demo is SQLite: testproject/db.sqlite3
export DJANGO_SETTINGS_MODULE=testproject.settings PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PATTERNS_PROVIDER_URL="http://$ADDR"  # the patterns' fake provider is this server

say() { printf 'demo: %s\n' "$*"; }

say "migrating testproject/db.sqlite3"
"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py demo_seed

worker="" server=""
stop() {
    trap - INT TERM EXIT
    say "stopping"
    [ -n "$server" ] && kill -TERM "$server" 2>/dev/null
    [ -n "$worker" ] && kill -TERM "$worker" 2>/dev/null  # finishes running jobs, hands back the rest
    wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 0' INT  # Ctrl-C is how the demo is meant to end
trap 'exit 143' TERM

# The worker runs in its own session so that Ctrl-C reaches it once, as the SIGTERM sent by stop().
setsid "$PY" manage.py runworker &
worker=$!
say "worker started (pid $worker)"
say "admin: http://$ADDR/admin/  (user admin, password admin); Ctrl-C stops the server and the worker"
"$PY" manage.py runserver --noreload "$ADDR" &
server=$!
wait "$server"
