#!/usr/bin/env bash
# The platform's three databases on one server (docker-entrypoint-initdb.d): the gold tables
# (POSTGRES_DB, created by the image itself), Dagster's run/event/schedule storage and MLflow's
# backend store. Runs once, when the data volume is empty; `clickrec up` does the same for the local
# stack (clickrec_platform/stack/postgres.py). Roles and the gold schema are created by the platform
# itself (`clickrec serve`, the stream job and the publish assets).
set -euo pipefail

for database in "${CLICKREC_DAGSTER_DB:-dagster}" "${CLICKREC_MLFLOW_DB:-mlflow}"; do
  if [ "$database" = "$POSTGRES_DB" ]; then
    continue
  fi
  echo "init-databases: creating database ${database}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
       --set=db="$database" --set=owner="$POSTGRES_USER" <<-'SQL'
	SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
	WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
done
