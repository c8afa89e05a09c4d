#!/usr/bin/env bash
# Run the whole test matrix; exit non-zero if any run fails. Every run is attempted, failures are
# listed at the end, then a summary table and a last line "N passed, N failed" (N = matrix runs).
#
#   lint     ruff check; makemigrations --check --dry-run            each venv
#            mypy; lint-imports (the layers' contracts)              .venv, once
#            ruff format --check (FORMAT_CHECK=0 skips it)           .venv, once
#   docs     mkdocs build --strict (the site, warnings as errors;    .venv, once
#            its samples: tests/unit/test_docs.py, in unit)
#   unit     pytest -m "not process and not browser and not chaos"   each venv x each database
#   process  pytest -m process (real worker processes; the demo      .venv x each database
#            script and the README's quick start in the SQLite run)
#   chaos    pytest -m chaos (faults, on the suite's own PostgreSQL  .venv, once (no database of the matrix)
#            and MariaDB servers on ports 5440 and 3310)
#   browser  pytest -m browser (the admin in headless Chromium)      .venv x sqlite, postgres
#
# Arguments are passed to every pytest run:  scripts/test.sh -k scheduler -x
# Narrow the matrix with environment variables (CI runs everything):
#   VENVS=".venv"                 venvs (default ".venv-dj52 .venv")
#   DBS="sqlite postgres"         databases (default "sqlite postgres mysql")
#   STAGES="lint unit"            stages (default "lint docs unit process browser chaos")
#   JOBS=2                        matrix runs at a time (default 1; each run has its own test database)
#   FORMAT_CHECK=0                lint skips `ruff format --check`
#   RUN_TIMEOUT=1200              seconds before a single run is killed and counted as failed
#   POSTGRES_URL / MYSQL_URL      servers (defaults below; pytest-django creates and drops test_* databases)
#
# Exit code 5 from pytest (no tests collected) is a failure. When pytest arguments narrow the run,
# a run that collects nothing is reported as "no tests" and not counted as failed, unless every
# pytest run of the matrix collected nothing.
# Logs, JUnit XML and SQLite test databases go to build/test-matrix/.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

VENVS="${VENVS:-.venv-dj52 .venv}"
DBS="${DBS:-sqlite postgres mysql}"
STAGES="${STAGES:-lint docs unit process browser chaos}"
JOBS="${JOBS:-1}"
RUN_TIMEOUT="${RUN_TIMEOUT:-1200}"
FORMAT_CHECK="${FORMAT_CHECK:-1}"  # ruff format --check; FORMAT_CHECK=0 skips it
POSTGRES_URL="${POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/scheduled_actions}"
MYSQL_URL="${MYSQL_URL:-mysql://root@127.0.0.1:3306/scheduled_actions}"
PYTEST_ARGS=("$@")
OUT="$REPO/build/test-matrix"
# test databases are per checkout and per run, so checkouts and parallel runs never share one
CHECKOUT="$(printf '%s' "$REPO" | sha256sum | cut -c1-6)"

say() { printf '==> %s\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 2; }
contains() { [[ " $1 " == *" $2 "* ]]; }

DBS="${DBS//mariadb/mysql}"
for v in $VENVS; do contains ".venv .venv-dj52" "$v" || die "unknown venv '$v' in VENVS (known: .venv .venv-dj52)"; done
for d in $DBS; do contains "sqlite postgres mysql" "$d" || die "unknown database '$d' in DBS (known: sqlite postgres mysql)"; done
for s in $STAGES; do contains "lint docs unit process browser chaos" "$s" || die "unknown stage '$s' in STAGES (known: lint docs unit process browser chaos)"; done
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || die "JOBS must be a positive integer"
[[ "$FORMAT_CHECK" == 0 || "$FORMAT_CHECK" == 1 ]] || die "FORMAT_CHECK must be 0 or 1"

# --- the plan: one entry per matrix run --------------------------------------------------------

RUN_ID=() RUN_CHECK=() RUN_VENV=() RUN_DB=()
plan() { RUN_ID+=("$1"); RUN_CHECK+=("$2"); RUN_VENV+=("$3"); RUN_DB+=("$4"); }
tag() { [ "$1" = ".venv" ] && echo "dj6" || echo "dj52"; }

for venv in $VENVS; do
    if contains "$STAGES" lint; then
        plan "ruff-$(tag "$venv")" ruff "$venv" -
        plan "migrations-$(tag "$venv")" makemigrations "$venv" -
    fi
done
if contains "$STAGES" lint && contains "$VENVS" .venv; then  # the same code and rules whatever the venv: once
    plan "mypy-dj6" mypy .venv -
    plan "imports-dj6" lint-imports .venv -
    if [ "$FORMAT_CHECK" = 1 ]; then plan "format-dj6" format .venv -; fi
fi
if contains "$STAGES" docs && contains "$VENVS" .venv; then
    plan "docs-dj6" docs .venv -  # the site's pages, links and generated tables; build/site
fi
if contains "$STAGES" unit; then
    for venv in $VENVS; do for db in $DBS; do plan "unit-$(tag "$venv")-$db" unit "$venv" "$db"; done; done
fi
if contains "$STAGES" process && contains "$VENVS" .venv; then
    for db in $DBS; do plan "process-dj6-$db" process .venv "$db"; done
fi
if contains "$STAGES" browser && contains "$VENVS" .venv; then
    for db in $DBS; do if contains "sqlite postgres" "$db"; then plan "browser-dj6-$db" browser .venv "$db"; fi; done
fi
if contains "$STAGES" chaos && contains "$VENVS" .venv; then
    plan "chaos-dj6" chaos .venv -  # starts its own servers: no database of the matrix
fi
TOTAL=${#RUN_ID[@]}
[ "$TOTAL" -gt 0 ] || die "nothing to run with VENVS='$VENVS' DBS='$DBS' STAGES='$STAGES'"

# --- bootstrap -------------------------------------------------------------------------------

needed_dbs="none"
if contains "$STAGES" unit || contains "$STAGES" process || contains "$STAGES" browser; then needed_dbs="$DBS"; fi
if ! VENVS="$VENVS" DBS="$needed_dbs" POSTGRES_URL="$POSTGRES_URL" MYSQL_URL="$MYSQL_URL" scripts/bootstrap.sh; then
    say "bootstrap failed: no matrix run could start"
    echo "0 passed, $TOTAL failed"
    exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT"
declare -A VERSIONS
for venv in $VENVS; do
    VERSIONS[$venv]="$("$venv/bin/python" -c 'import sys, django; print(f"Django {django.get_version()}, Python {sys.version.split()[0]}")')"
    say "$venv: ${VERSIONS[$venv]}"
done

# --- running one matrix entry ----------------------------------------------------------------

database_env() {  # database_env ID DB -> KEY=VALUE lines for env(1)
    local id="$1" db="$2" name
    name="test_scheduled_actions_${CHECKOUT}_${id//-/_}"
    case "$db" in
        sqlite) echo "TEST_DATABASE_NAME=$OUT/$id.sqlite3" ;;
        postgres) echo "DATABASE_URL=$POSTGRES_URL"; echo "TEST_DATABASE_NAME=$name" ;;
        mysql) echo "DATABASE_URL=$MYSQL_URL"; echo "TEST_DATABASE_NAME=$name" ;;
    esac
}

command_of() {  # command_of INDEX -> the run's command line, one word per line
    local i="$1" py="${RUN_VENV[$1]}/bin/python"
    case "${RUN_CHECK[$i]}" in
        ruff) printf '%s\n' "${RUN_VENV[$i]}/bin/ruff" check --output-format=concise . ;;
        format) printf '%s\n' "${RUN_VENV[$i]}/bin/ruff" format --check . ;;
        mypy) printf '%s\n' "$py" -m mypy ;;  # what and how strictly: [tool.mypy] in pyproject.toml
        lint-imports) printf '%s\n' "$py" -c 'from importlinter.cli import lint_imports_command; lint_imports_command()' ;;
        makemigrations) printf '%s\n' "$py" -m django makemigrations --check --dry-run ;;
        docs) printf '%s\n' "$py" -m mkdocs build --strict --quiet ;;
        unit) printf '%s\n' "$py" -m pytest -m "not process and not browser and not chaos" --junitxml="${OUT#"$REPO"/}/${RUN_ID[$i]}.xml" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} ;;
        process) printf '%s\n' "$py" -m pytest -m process --junitxml="${OUT#"$REPO"/}/${RUN_ID[$i]}.xml" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} ;;
        chaos) printf '%s\n' "$py" -m pytest -m chaos --junitxml="${OUT#"$REPO"/}/${RUN_ID[$i]}.xml" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} ;;
        browser) printf '%s\n' "$py" -m pytest -m browser --junitxml="${OUT#"$REPO"/}/${RUN_ID[$i]}.xml" ${PYTEST_ARGS[@]+"${PYTEST_ARGS[@]}"} ;;
    esac
}

run_one() {  # run_one INDEX [stream]: runs the entry, writes OUT/ID.rc and OUT/ID.secs
    local i="$1" stream="${2:-}" id="${RUN_ID[$1]}" started rc pid
    local -a cmd envs
    mapfile -t cmd < <(command_of "$i")
    envs=(DJANGO_SETTINGS_MODULE=tests.settings "PYTHONPATH=$REPO:$REPO/testproject")
    case "${RUN_CHECK[$i]}" in
        ruff|format|mypy|lint-imports) ;;  # mypy's Django plugin loads the settings, and queries nothing
        docs) envs+=(NO_MKDOCS_2_WARNING=1) ;;  # the hooks configure their own settings; no database
        chaos) envs+=("TEST_DATABASE_NAME=$OUT/$id.sqlite3") ;;  # pytest-django's own database: SQLite
        makemigrations) envs+=("DATABASE_URL=sqlite:///$OUT/$id.sqlite3") ;;
        *) mapfile -t -O "${#envs[@]}" envs < <(database_env "$id" "${RUN_DB[$i]}")
           rm -f "$OUT/$id.sqlite3" "$OUT/$id.sqlite3-wal" "$OUT/$id.sqlite3-shm" ;;
    esac
    say "[$((i + 1))/$TOTAL] $id: $(printf '%q ' "${cmd[@]}")(${RUN_DB[$i]/-/no database})"
    : >"$OUT/$id.log"
    started=$(date +%s%N)
    # timeout runs the command in its own process group and forwards TERM/INT to it
    env -u DATABASE_URL -u TEST_DATABASE_NAME "${envs[@]}" \
        timeout --kill-after=30 "$RUN_TIMEOUT" "${cmd[@]}" </dev/null >>"$OUT/$id.log" 2>&1 &
    pid=$!
    echo "$pid" >"$OUT/$id.pid"
    if [ -n "$stream" ]; then tail -n +1 -f --pid="$pid" "$OUT/$id.log" || true; fi
    rc=0
    wait "$pid" || rc=$?
    echo $(( ($(date +%s%N) - started) / 1000000 )) >"$OUT/$id.ms"
    echo "$rc" >"$OUT/$id.rc"
    rm -f "$OUT/$id.pid"
    [ -n "$stream" ] || say "$id: $(describe_rc "$rc" "${RUN_CHECK[$i]}") ($(fmt_ms "$(cat "$OUT/$id.ms")"))"
}

describe_rc() {  # describe_rc RC CHECK
    case "$1" in
        0) echo passed ;;
        5) if [[ "$2" == unit || "$2" == process || "$2" == browser || "$2" == chaos ]]; then echo "no tests"; else echo "failed (exit 5)"; fi ;;
        124|137) echo "timeout" ;;
        *) echo "failed (exit $1)" ;;
    esac
}

fmt_ms() { local ms="$1"; if [ "$ms" -lt 60000 ]; then printf '%d.%ds' $((ms / 1000)) $((ms % 1000 / 100)); else printf '%dm%02ds' $((ms / 60000)) $((ms % 60000 / 1000)); fi; }

interrupted() {
    trap - INT TERM
    say "interrupted: stopping running matrix entries"
    local f
    for f in "$OUT"/*.pid; do [ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
    wait || true
    exit 130
}
trap interrupted INT TERM

# --- the matrix ------------------------------------------------------------------------------

MATRIX_STARTED=$SECONDS
if [ "$JOBS" -eq 1 ]; then
    for i in "${!RUN_ID[@]}"; do run_one "$i" stream; done
else
    say "running $TOTAL entries, $JOBS at a time (logs in ${OUT#"$REPO"/}/)"
    for i in "${!RUN_ID[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
        run_one "$i" &
    done
    wait || true
fi

# --- results ---------------------------------------------------------------------------------

passed=0 failed=0 pytest_runs=0 empty_runs=0
RESULT=()
for i in "${!RUN_ID[@]}"; do
    rc="$(cat "$OUT/${RUN_ID[$i]}.rc" 2>/dev/null || echo 255)"
    RESULT[i]="$rc"
    if [[ "${RUN_CHECK[$i]}" == unit || "${RUN_CHECK[$i]}" == process || "${RUN_CHECK[$i]}" == browser || "${RUN_CHECK[$i]}" == chaos ]]; then
        pytest_runs=$((pytest_runs + 1))
        [ "$rc" -eq 5 ] && empty_runs=$((empty_runs + 1))
    fi
done
# exit 5 is tolerated only when pytest arguments narrowed the run and something else collected tests
tolerate_empty=0
if [ "${#PYTEST_ARGS[@]}" -gt 0 ] && [ "$empty_runs" -lt "$pytest_runs" ]; then tolerate_empty=1; fi

failed_ids=()
for i in "${!RUN_ID[@]}"; do
    rc="${RESULT[$i]}"
    if [ "$rc" -eq 0 ] || { [ "$rc" -eq 5 ] && [ "$tolerate_empty" -eq 1 ] && [[ "${RUN_CHECK[$i]}" == unit || "${RUN_CHECK[$i]}" == process || "${RUN_CHECK[$i]}" == browser || "${RUN_CHECK[$i]}" == chaos ]]; }; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_ids+=("$i")
    fi
done

if [ "$JOBS" -gt 1 ]; then
    for i in ${failed_ids[@]+"${failed_ids[@]}"}; do
        log="$OUT/${RUN_ID[$i]}.log"
        say "${RUN_ID[$i]} failed; the end of ${log#"$REPO"/}:"
        tail -n 60 "$log" | sed 's/^/    /'
    done
fi

echo
say "summary ($(fmt_ms $(( (SECONDS - MATRIX_STARTED) * 1000 ))) for the matrix; logs in ${OUT#"$REPO"/}/)"
printf '%-22s %-15s %-11s %-9s %-16s %9s\n' RUN CHECK VENV DB RESULT DURATION
for i in "${!RUN_ID[@]}"; do
    id="${RUN_ID[$i]}" rc="${RESULT[$i]}"
    result="$(describe_rc "$rc" "${RUN_CHECK[$i]}")"
    if [ "$rc" -eq 5 ] && [ "$tolerate_empty" -eq 0 ] && [ "$result" = "no tests" ]; then result="failed (no tests)"; fi
    ms="$(cat "$OUT/$id.ms" 2>/dev/null || echo 0)"
    printf '%-22s %-15s %-11s %-9s %-16s %9s\n' "$id" "${RUN_CHECK[$i]}" "${RUN_VENV[$i]}" "${RUN_DB[$i]}" "$result" "$(fmt_ms "$ms")"
done
for venv in $VENVS; do printf '%s = %s\n' "$venv" "${VERSIONS[$venv]}"; done
if [ "$tolerate_empty" -eq 1 ] && [ "$empty_runs" -gt 0 ]; then
    echo "note: $empty_runs run(s) collected no tests for the given pytest arguments; not counted as failed"
fi
if [ "$failed" -gt 0 ]; then
    printf 'failed: %s\n' "$(for i in "${failed_ids[@]}"; do printf '%s ' "${RUN_ID[$i]}"; done)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
