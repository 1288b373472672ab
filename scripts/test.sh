#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests on SQLite and
# on a real PostgreSQL.
#
# First the Debian packages the tests use are installed if missing
# (scripts/install-test-deps.sh). PostgreSQL: if ANSIM_TEST_DATABASE_URL is
# set (a role allowed to CREATE DATABASE), the tests use it. Otherwise this
# script starts a private, throwaway PostgreSQL server in a temporary
# directory and stops and removes it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

pg_dir=""
pg_port="${ANSIM_TEST_PG_PORT:-55432}"
started_pg=""

find_pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

# PostgreSQL refuses to run as root: run it as the `postgres` user then.
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

stop_pg() {
  if [ -n "$started_pg" ]; then
    as_pg_user "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
  fi
  [ -n "$pg_dir" ] && rm -rf "$pg_dir"
}

if [ -z "${ANSIM_TEST_DATABASE_URL:-}" ]; then
  pg_bin=$(find_pg_bin) || {
    echo "scripts/test.sh: PostgreSQL is needed for the tests: apt-get install -y postgresql" >&2
    echo "  (or set ANSIM_TEST_DATABASE_URL to a server where the role may CREATE DATABASE)" >&2
    exit 1
  }
  # Under /tmp, not the checkout: the server's user must reach it.
  pg_dir=$(mktemp -d /tmp/ansim-test-pg.XXXXXX)
  trap stop_pg EXIT
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pg_dir"; fi
  as_pg_user "$pg_bin/initdb" -D "$pg_dir/data" -U ansim --auth=trust >"$pg_dir/initdb.log" 2>&1 || {
    cat "$pg_dir/initdb.log" >&2; exit 1; }
  as_pg_user "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null || {
    cat "$pg_dir/server.log" >&2; exit 1; }
  started_pg=1
  export ANSIM_TEST_DATABASE_URL="postgres://ansim@127.0.0.1:$pg_port/postgres"
  echo "scripts/test.sh: private PostgreSQL on 127.0.0.1:$pg_port"
fi

# A hung test fails the run instead of holding it (and CI) for hours: the
# whole suite takes about 10 minutes here; cargo names a test that runs
# past 60 s ("has been running for over 60 seconds").
limit="${ANSIM_TEST_TIMEOUT:-45m}"
status=0
timeout -k 30s "$limit" cargo test --locked --all-targets "$@" || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "scripts/test.sh: the tests did not finish within $limit (ANSIM_TEST_TIMEOUT): a test hangs" >&2
fi
exit "$status"
