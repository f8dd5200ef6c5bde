#!/bin/bash
# postgres: a PostgreSQL server (its own cluster, as the postgres user, on
# a Unix socket in a scratch directory): pgbench initialises and runs 3 s
# of transactions, psql queries, pg_dump, then a fast shutdown.
set -euo pipefail
bin=$(cat "$FIX/pgbin")
sock=$(mktemp -d /tmp/vigil-pg-XXXXXX)
chown postgres "$sock"
# as the postgres user, the way init scripts start daemons
as_pg() { start-stop-daemon --start --chuid postgres --pidfile "$sock/none.pid" --startas "$1" -- "${@:2}"; }
stop() { as_pg "$bin/pg_ctl" -D "$FIX/pg/data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$sock"; }
trap stop EXIT
as_pg "$bin/pg_ctl" -D "$FIX/pg/data" -w -l "$sock/log" -o "-k $sock -c listen_addresses='' -p 5433" start >/dev/null
export PGHOST=$sock PGPORT=5433 PGUSER=postgres
as_pg "$bin/pgbench" -q -i -s 2 postgres 2>/dev/null
as_pg "$bin/pgbench" -c 2 -j 2 -T 3 postgres | grep -E '^(tps|number of transactions actually)'
as_pg "$bin/psql" -qAt -c "select count(*), sum(abalance) from pgbench_accounts" postgres
as_pg "$bin/pg_dump" postgres | wc -l
