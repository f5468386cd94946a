#!/usr/bin/env bash
# Usage: start-private-pg.sh <workdir> <port>
# A throw-away PostgreSQL cluster on 127.0.0.1:<port> (trust auth, database `intake`) that a
# test may stop and start again (fault tests). As root the server runs as `postgres`.
# Stop: pg_ctl -D <workdir>/data -m immediate stop (as the same user).
set -euo pipefail
D=$(realpath -m "${1:?workdir}"); PORT=${2:?port}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$PGBIN/initdb" ] || PGBIN=$(dirname "$(readlink -f "$(command -v initdb)")")
if [ "$(id -u)" = 0 ]; then AS="runuser -u postgres --"; mkdir -p "$D"; chown postgres: "$D"; else AS=""; mkdir -p "$D"; fi
if [ ! -d "$D/data" ]; then
  $AS "$PGBIN/initdb" -D "$D/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$D/initdb.log"
fi
$AS "$PGBIN/pg_ctl" -D "$D/data" -l "$D/server.log" -w -t 30 start -o \
  "-c listen_addresses=127.0.0.1 -p $PORT -k $D -c fsync=off -c full_page_writes=off" >/dev/null
"$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -tAc \
  "SELECT 1 FROM pg_database WHERE datname = 'intake'" | grep -q 1 \
  || "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qc "CREATE DATABASE intake"
echo "$PGBIN"
