#!/usr/bin/env bash
# The demo: SQLite (testproject/db.sqlite3), the demo's page at http://127.0.0.1:8000/demo/, the admin at
# http://127.0.0.1:8000/admin/ (admin / admin), a worker running the example jobs. Ctrl-C stops the server
# and the worker.
#
# Needs only Python 3.11+ and its sqlite3 module: no root, no apt, no browser, no database server. The
# demo has its own virtualenv, .venv-demo (pip install -e ".[demo]": Django, croniter, django-environ,
# requests), rebuilt only when pyproject.toml or the Python changes.
#
#   PORT=8010 scripts/demo.sh      (make demo PORT=8010) serve on another port
#   HOST=0.0.0.0 scripts/demo.sh   listen on another address (default 127.0.0.1)
#   DEMO_DB=/tmp/demo.sqlite3      another SQLite file (default testproject/db.sqlite3)
#   PYTHON=/path/to/python3.12     the interpreter for .venv-demo (default: python3.13 ... python3.11, python3)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
VENV="$REPO/.venv-demo"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$PORT" =~ ^[0-9]+$ ]] && [ "$PORT" -ge 1 ] && [ "$PORT" -le 65535 ] || die "PORT must be a port number, got '$PORT'"

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sqlite3, sys, venv; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
            command -v "$candidate"
            return
        fi
    done
    die "no Python 3.11 or later with sqlite3 and venv found (set PYTHON=/path/to/python3)"
}
PYTHON="$(find_python)"

# The port first: a taken one is said before anything is built, migrated or seeded.
port_check='
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
    try:
        s.bind((host, port))
    except OSError as exc:
        sys.exit(exc.strerror or str(exc))
'
if ! problem="$("$PYTHON" -c "$port_check" "$HOST" "$PORT" 2>&1)"; then
    die "cannot serve on $HOST:$PORT ($problem): run make demo PORT=8010 (or any free port)"
fi

# --- the demo's virtualenv -------------------------------------------------------------------

stamp="$( { cat "$REPO/pyproject.toml"; "$PYTHON" -VV; } | sha256sum | cut -c1-16)"
if [ ! -f "$VENV/.demo-stamp" ] || [ "$(cat "$VENV/.demo-stamp")" != "$stamp" ] \
    || ! "$VENV/bin/python" -c 'import django, environ, requests, django_scheduled_actions' >/dev/null 2>&1; then
    mkdir -p "$REPO/build"
    log="$REPO/build/demo-venv.log"
    say "building .venv-demo with $("$PYTHON" -V) (log in build/demo-venv.log)"
    rm -rf "$VENV"
    { "$PYTHON" -m venv "$VENV" && "$VENV/bin/python" -m pip install -e "$REPO[demo]"; } >"$log" 2>&1 \
        || { tail -20 "$log" >&2; die ".venv-demo: installation failed (full log: $log)"; }
    echo "$stamp" >"$VENV/.demo-stamp"
fi
PY="$VENV/bin/python"

cd "$REPO/testproject"
export DATABASE_URL="sqlite:///${DEMO_DB:-$REPO/testproject/db.sqlite3}"  # the demo is SQLite
export DJANGO_SETTINGS_MODULE=testproject.settings PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PATTERNS_PROVIDER_URL="http://$HOST:$PORT"  # the patterns' fake provider is this server
[ "$HOST" = 0.0.0.0 ] && export PATTERNS_PROVIDER_URL="http://127.0.0.1:$PORT"

# --- the processes, and stopping every one of them whatever fails ------------------------------

worker="" server=""
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
stop() {
    local rc=$? pid i
    trap - INT TERM HUP EXIT
    set +e  # every step below runs, whichever fails
    if [ -n "$server$worker" ]; then say "stopping the server and the worker"; fi
    alive "$server" && kill -TERM "$server" 2>/dev/null
    alive "$worker" && kill -TERM "$worker" 2>/dev/null  # finishes running jobs, hands back the rest
    for i in $(seq 1 150); do  # up to 15 s, then SIGKILL
        alive "$server" || alive "$worker" || break
        sleep 0.1
    done
    for pid in "$server" "$worker"; do
        if alive "$pid"; then say "pid $pid did not stop: killing it"; kill -KILL "$pid" 2>/dev/null; fi
    done
    wait 2>/dev/null
    exit "$rc"
}
trap stop EXIT
trap 'exit 0' INT  # Ctrl-C is how the demo is meant to end
trap 'exit 143' TERM
trap 'exit 129' HUP

say "migrating ${DATABASE_URL#sqlite:///}"
"$PY" manage.py migrate --noinput -v 0
"$PY" manage.py demo_seed

# The worker runs in its own session so that Ctrl-C reaches it once, as the SIGTERM sent by stop().
setsid "$PY" manage.py runworker &
worker=$!
"$PY" manage.py runserver --noreload "$HOST:$PORT" &
server=$!
cat <<EOF
demo: worker started (pid $worker), server started (pid $server)
demo:
demo:   http://$HOST:$PORT/demo/    the demo's page: place orders, send a self-destructing message, see their jobs
demo:   http://$HOST:$PORT/admin/   the admin (user admin, password admin): jobs, crons, workflow runs, the dashboard
demo:
demo: The payments here fail now and then on purpose (a fake provider): lines saying "simulated"
demo: and retried jobs are the demo working. Ctrl-C stops the server and the worker.
EOF
status=0
wait -n "$server" "$worker" || status=$?
if alive "$server"; then say "the worker exited (status $status)"; else say "the server exited (status $status)"; fi
exit 1
