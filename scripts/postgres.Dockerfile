# syntax=docker/dockerfile:1
# PostgreSQL for `make mesh-pods` (devtools/pods), where the chart's image (postgresql.image, the
# official postgres image) cannot be pulled: Debian's postgresql package on the same base as the
# service images, with an entrypoint that does what the chart's StatefulSet uses of the official
# image's (scripts/postgres-entrypoint.sh), and its socket directory writable by any user (mode
# 3777, as the official image has it; the engine gives the emptyDir mounted there these modes). Build context: the repository root, e.g.
#   docker build -f scripts/postgres.Dockerfile --build-arg PYTHON_IMAGE=... -t meshchat-postgres .
# apt-get reaches the Debian mirror the base names; behind a TLS-intercepting proxy an https mirror
# needs the proxy's CA, the build secret `ca-bundle` as in the Dockerfile.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG POSTGRES_MAJOR=15
ARG REPLACES=docker.io/library/postgres:17.7-bookworm
LABEL org.opencontainers.image.title="meshchat-postgres" \
      org.opencontainers.image.description="Debian's PostgreSQL ${POSTGRES_MAJOR}, a stand-in for ${REPLACES} in make mesh-pods" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      io.meshchat.stand-in-for="${REPLACES}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The package name pins the major version; the rest follows Debian 12's (security) updates, which
# a pinned version string would refuse once the mirror moves on.
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then \
        echo 'Acquire::https::CaInfo "/run/secrets/ca-bundle";' > /etc/apt/apt.conf.d/99ca-bundle; \
    fi \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
        "postgresql-${POSTGRES_MAJOR}" libnss-wrapper \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /etc/apt/apt.conf.d/99ca-bundle \
    && ln -s "$(dpkg -L libnss-wrapper | grep '/libnss_wrapper.so$')" /usr/local/lib/libnss_wrapper.so \
    && ln -s "/usr/lib/postgresql/${POSTGRES_MAJOR}/bin" /usr/local/lib/postgresql-bin \
    && chmod 3777 /var/run/postgresql
COPY scripts/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/local/lib/postgresql-bin:$PATH
STOPSIGNAL SIGINT
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
