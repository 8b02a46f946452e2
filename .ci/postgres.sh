# Sourced by .ci/run: start a throwaway PostgreSQL on 127.0.0.1 and export its URL as
# TIERGATE_TEST_POSTGRES. Needs root (to run the server as the postgres user).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null) || echo "warning: PostgreSQL could not be installed"
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -n "$pg_bin" ] && id postgres >/dev/null 2>&1; then
  pg_data=$(mktemp -d /tmp/tiergate-ci-pg.XXXXXX)
  chown postgres "$pg_data"
  pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  su postgres -s /bin/sh -c "$pg_bin/initdb -D $pg_data/db -A trust -U postgres -E UTF8" >/dev/null
  su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D $pg_data/db -l $pg_data/log -w -o '-k $pg_data -p $pg_port -c listen_addresses=127.0.0.1 -c fsync=off' start" >/dev/null
  export TIERGATE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$pg_port/postgres"
  trap 'su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D $pg_data/db -m immediate stop" >/dev/null 2>&1 || true; rm -rf "$pg_data"' EXIT
  echo "PostgreSQL for the audit log tests: $TIERGATE_TEST_POSTGRES"
else
  echo "warning: no PostgreSQL server; the PostgreSQL audit log tests cannot run"
fi
