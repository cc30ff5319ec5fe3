#!/bin/bash
# What the chart's PostgreSQL StatefulSet uses of the official postgres image's entrypoint, for the
# stand-in image of scripts/postgres.Dockerfile: an arbitrary UID gets a passwd entry through
# nss_wrapper; an empty PGDATA is initialized with POSTGRES_USER and the password in
# POSTGRES_PASSWORD_FILE, password logins from anywhere (scram-sha-256), and the executable scripts
# of /docker-entrypoint-initdb.d run once against a server on the Unix socket only; then PostgreSQL
# listens on every address.
set -euo pipefail

if ! getent passwd "$(id -u)" >/dev/null; then
    export NSS_WRAPPER_PASSWD=/tmp/nss-passwd NSS_WRAPPER_GROUP=/tmp/nss-group
    echo "postgres:x:$(id -u):$(id -g):PostgreSQL:${PGDATA}:/bin/false" >"${NSS_WRAPPER_PASSWD}"
    echo "postgres:x:$(id -g):" >"${NSS_WRAPPER_GROUP}"
    export LD_PRELOAD=/usr/local/lib/libnss_wrapper.so
fi

if [[ ! -s "${PGDATA}/PG_VERSION" ]]; then
    mkdir -p "${PGDATA}"
    chmod 0700 "${PGDATA}"
    initdb --username="${POSTGRES_USER}" --pwfile="${POSTGRES_PASSWORD_FILE}" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    echo "host all all all scram-sha-256" >>"${PGDATA}/pg_hba.conf"
    pg_ctl --pgdata="${PGDATA}" --options="-c listen_addresses='' -p ${PGPORT:-5432}" --wait start
    for script in /docker-entrypoint-initdb.d/*; do
        if [[ -f "${script}" && -x "${script}" ]]; then
            echo "running ${script}"
            "${script}"
        fi
    done
    pg_ctl --pgdata="${PGDATA}" --mode=fast --wait stop >/dev/null
fi

exec postgres -c listen_addresses='*' -p "${PGPORT:-5432}"
