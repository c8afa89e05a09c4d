#!/usr/bin/env bash
# Set up everything the demo and the test matrix need, from the repo's own files.
#
# Idempotent and fast when already done: apt packages are only installed when missing, database
# servers only started when not accepting connections, and a venv is only (re)built when its stamp
# (a hash of pyproject.toml, this script and its requirements) does not match.
#
#   .venv       Python 3.12, latest Django 6.x   pip install -e ".[postgres,mysql,prometheus,demo,test,docs]"
#   .venv-dj52  Python 3.11, Django>=5.2,<6     pip install -e ".[postgres,mysql,prometheus,demo,test]"
# (the demo does not use these: scripts/demo.sh builds its own .venv-demo, with no root and no apt)
# Each venv gets the django-stubs of its Django (stubs X.Y are for Django X.Y) and a mypy they support.
#
# Environment (all optional):
#   VENVS="..."        which venvs to build (default: ".venv .venv-dj52")
#   DBS="..."          which databases must be running (default: "sqlite postgres mysql"; "none")
#   PYTHON312 / PYTHON311   interpreters to use (default: found via pyenv, then PATH;
#                           .venv falls back to 3.13 when there is no 3.12)
#   POSTGRES_URL / MYSQL_URL  servers to check (defaults below)
#   FORCE_BOOTSTRAP=1  rebuild the venvs even if their stamps match
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

VENVS="${VENVS:-.venv .venv-dj52}"
DBS="${DBS:-sqlite postgres mysql}"
POSTGRES_URL="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/scheduled_actions}"
MYSQL_URL="${MYSQL_URL:-mysql://root@127.0.0.1:3306/scheduled_actions}"
LOG_DIR="$REPO/build/bootstrap"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 DEBIAN_FRONTEND=noninteractive

say() { printf 'bootstrap: %s\n' "$*"; }
die() { printf 'bootstrap: ERROR: %s\n' "$*" >&2; exit 1; }
has() { command -v "$1" >/dev/null 2>&1; }

# One bootstrap at a time per checkout (make demo and make test started together must not race).
mkdir -p "$LOG_DIR"
if has flock; then
    exec 9>"$LOG_DIR/.lock"
    flock 9
fi

# --- apt packages ----------------------------------------------------------------------------

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif has sudo; then sudo "$@"; else die "need root for: $*"; fi
}

wants_db() { [[ " $DBS " == *" $1 "* ]]; }
wants_venv() { [[ " $VENVS " == *" $1 "* ]]; }

# what is needed, checked by what it provides rather than by package name
missing=()
has gcc || missing+=(gcc)
has pkg-config || missing+=(pkg-config)
{ has pkg-config && { pkg-config --exists libmariadb || pkg-config --exists mysqlclient; }; } \
    || missing+=(libmariadb-dev)  # mysqlclient builds against it
if wants_db postgres; then { has psql && has pg_isready; } || missing+=(postgresql-client); fi
if wants_db mysql; then { has mariadb-admin || has mysqladmin; } || missing+=(mariadb-client); fi
# the browser tests (.venv) drive Debian's chromium through Playwright, which downloads no browser
if wants_venv .venv; then [ -x /usr/bin/chromium ] || missing+=(chromium); fi
# the chaos suite runs a worker under libfaketime (a skewed clock); the PgBouncer tests start their own
if wants_db postgres; then
    has faketime || missing+=(faketime)
    [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    has apt-get || die "please install: ${missing[*]} (or your system's equivalents)"
    say "installing apt packages: ${missing[*]}"
    as_root apt-get update -qq >"$LOG_DIR/apt.log" 2>&1 || { tail -20 "$LOG_DIR/apt.log"; die "apt-get update failed"; }
    as_root apt-get install -y -qq "${missing[@]}" >>"$LOG_DIR/apt.log" 2>&1 \
        || { tail -20 "$LOG_DIR/apt.log"; die "apt-get install failed"; }
fi

# --- database servers ------------------------------------------------------------------------

# host and port of a URL like scheme://user@host:port/name
url_host() { local rest="${1#*://}"; rest="${rest#*@}"; rest="${rest%%/*}"; echo "${rest%%:*}"; }
url_port() { local rest="${1#*://}"; rest="${rest#*@}"; rest="${rest%%/*}"; [[ "$rest" == *:* ]] && echo "${rest##*:}" || echo "$2"; }
url_user() { local rest="${1#*://}"; [[ "$rest" == *@* ]] && { rest="${rest%%@*}"; echo "${rest%%:*}"; } || echo "$2"; }
url_name() { local rest="${1#*://}"; rest="${rest#*/}"; echo "${rest%%\?*}"; }

wait_for() {  # wait_for DESCRIPTION COMMAND...: up to 60 s
    local i
    for i in $(seq 1 120); do
        "${@:2}" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$1 did not come up within 60 s"
}

if wants_db postgres; then
    PG_HOST="$(url_host "$POSTGRES_URL")" PG_PORT="$(url_port "$POSTGRES_URL" 5432)"
    PG_USER="$(url_user "$POSTGRES_URL" postgres)" PG_NAME="$(url_name "$POSTGRES_URL")"
    pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
    if ! pg_ready; then
        has pg_ctlcluster || die "PostgreSQL is not accepting connections on $PG_HOST:$PG_PORT and is not installed"
        version="$(ls /etc/postgresql | sort -V | tail -1)"
        say "starting PostgreSQL $version"
        as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        wait_for "PostgreSQL" pg_ready
    fi
    psql_do() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"; }
    if [ "$(psql_do -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_NAME'")" != "1" ]; then
        say "creating PostgreSQL database $PG_NAME"
        psql_do -c "CREATE DATABASE \"$PG_NAME\""
    fi
fi

if wants_db mysql; then
    MY_HOST="$(url_host "$MYSQL_URL")" MY_PORT="$(url_port "$MYSQL_URL" 3306)"
    MY_USER="$(url_user "$MYSQL_URL" root)" MY_NAME="$(url_name "$MYSQL_URL")"
    MY_ADMIN="$(command -v mariadb-admin || command -v mysqladmin)" MY_CLIENT="$(command -v mariadb || command -v mysql)"
    my_ready() { "$MY_ADMIN" --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" ping; }
    if ! my_ready >/dev/null 2>&1; then
        [ -x /usr/sbin/mariadbd ] || die "MariaDB is not accepting connections on $MY_HOST:$MY_PORT and is not installed"
        say "starting MariaDB"
        if [ ! -d /run/mysqld ]; then as_root install -d -o mysql -g mysql /run/mysqld; fi
        as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
        wait_for "MariaDB" my_ready
    fi
    "$MY_CLIENT" --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" \
        -e "CREATE DATABASE IF NOT EXISTS \`$MY_NAME\` CHARACTER SET utf8mb4"
fi

# --- virtualenvs -----------------------------------------------------------------------------

find_python() {  # find_python OVERRIDE VERSION... -> the first interpreter found of these versions
    local override="$1" version candidate root
    shift
    if [ -n "$override" ]; then echo "$override"; return; fi
    root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
    for version in "$@"; do
        for candidate in $(ls -d "$root"/versions/"$version".*/bin/python 2>/dev/null | sort -V -r) "python$version"; do
            if "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != (${version/./, }))" >/dev/null 2>&1; then
                command -v "$candidate"; return
            fi
        done
    done
    die "Python $1 not found (install it with pyenv, or set PYTHON${1//./}=/path/to/python$1)"
}

build_venv() {  # build_venv DIR PYTHON EXTRAS SPEC...: the specs pin what differs per venv (Django, its stubs)
    local dir="$1" python="$2" extras="$3" specs=("${@:4}") stamp stamp_file="$1/.bootstrap-stamp" log="$LOG_DIR/$1.log"
    local pyversion
    pyversion="$("$python" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')"
    stamp="$( { cat pyproject.toml scripts/bootstrap.sh; echo "$pyversion $extras ${specs[*]}"; } | sha256sum | cut -c1-16)"
    if [ -z "${FORCE_BOOTSTRAP:-}" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ] \
        && "$dir/bin/python" -c 'import django, django_scheduled_actions' >/dev/null 2>&1; then
        return 0
    fi
    if [ -x "$dir/bin/python" ] && [ "$("$dir/bin/python" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))' 2>/dev/null)" != "$pyversion" ]; then
        say "$dir: wrong or broken Python, recreating"
        rm -rf "$dir"
    fi
    say "$dir: installing (Python $pyversion, ${specs[*]}), log in ${log#"$REPO"/}"
    local started=$SECONDS
    {
        [ -x "$dir/bin/python" ] || "$python" -m venv "$dir"
        "$dir/bin/python" -m pip install --upgrade pip
        "$dir/bin/python" -m pip install --upgrade -e ".[$extras]" "${specs[@]}"
        "$dir/bin/python" -m pip check
    } >"$log" 2>&1 || { tail -30 "$log" >&2; die "$dir: installation failed (full log: $log)"; }
    echo "$stamp" >"$stamp_file"
    say "$dir: ready ($("$dir/bin/python" -c 'import django; print("Django", django.get_version())'), $((SECONDS - started))s)"
}

wants_venv .venv && build_venv .venv "$(find_python "${PYTHON312:-}" 3.12 3.13)" postgres,mysql,prometheus,demo,test,docs \
    "Django>=6,<7" "django-stubs[compatible-mypy]>=6,<7"
wants_venv .venv-dj52 && build_venv .venv-dj52 "$(find_python "${PYTHON311:-}" 3.11)" postgres,mysql,prometheus,demo,test \
    "Django>=5.2,<6" "django-stubs[compatible-mypy]>=5.2,<6"
say "ok"
