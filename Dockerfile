# syntax=docker/dockerfile:1
# The image of one meshchat service, named by the build argument SERVICE (auth or chat). Build
# context: the repository root (skaffold.yaml and `make images` pass SERVICE), e.g.
#   docker build --build-arg SERVICE=auth -t meshchat-auth .
# An image holds the project's runtime dependencies, installed with the same constraints.txt as
# `make`, and three packages of this repository: the service, the shared runtime
# (meshchat_runtime) and the generated code (meshchat). The other service and the CLI are never
# copied in.
# PYTHON_IMAGE is the base of both stages: the official image below, or, where no registry can be
# reached, a stand-in built from Debian's packages (`make images`; the README's "Images").
# Behind a TLS-intercepting proxy, give pip the proxy's CA bundle as the build secret `ca-bundle`:
#   docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt ...

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# The dependencies ([project] dependencies of pyproject.toml) come before anything that depends on
# SERVICE, so both images share this layer. pip runs from a venv of this stage (/opt/pip): the
# service's venv never holds pip.
RUN --mount=type=secret,id=ca-bundle \
    python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' > requirements.txt \
    && python3 -m venv /opt/pip \
    && python3 -m venv --without-pip /opt/meshchat \
    && if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/pip/bin/python -m pip --python /opt/meshchat/bin/python install --no-compile \
        -c constraints.txt -r requirements.txt

ARG SERVICE
RUN case "${SERVICE}" in auth|chat) ;; *) echo "SERVICE must be auth or chat, not '${SERVICE}'" >&2; exit 1 ;; esac
COPY services/meshchat/ /opt/meshchat/app/meshchat/
COPY services/meshchat_runtime/ /opt/meshchat/app/meshchat_runtime/
COPY services/meshchat_${SERVICE}/ /opt/meshchat/app/meshchat_${SERVICE}/
# /opt/meshchat/app goes on the venv's path; meshchat-service is `python -m meshchat_${SERVICE}`
# under a name that the ENTRYPOINT can spell (exec form expands no variables).
RUN SITE="$(/opt/meshchat/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && echo /opt/meshchat/app > "${SITE}/meshchat.pth" \
    && printf '#!/opt/meshchat/bin/python\nimport runpy\n\nrunpy.run_module("meshchat_%s", run_name="__main__", alter_sys=True)\n' \
        "${SERVICE}" > /opt/meshchat/bin/meshchat-service \
    && chmod 0755 /opt/meshchat/bin/meshchat-service \
    && /opt/meshchat/bin/python -c "import meshchat_${SERVICE}.__main__, meshchat_runtime, meshchat"

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
# The official image's system Python carries pip, setuptools and wheel, which nothing needs at run
# time (the stand-in base has none). Before anything that depends on SERVICE: a shared layer.
RUN if python3 -m pip --version >/dev/null 2>&1; then \
        python3 -m pip uninstall --yes --no-cache-dir pip setuptools wheel; \
    fi
ARG SERVICE
LABEL org.opencontainers.image.title="meshchat-${SERVICE}" \
      org.opencontainers.image.description="meshchat ${SERVICE} service (gRPC)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PATH=/opt/meshchat/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/meshchat /opt/meshchat
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["meshchat-service"]
CMD ["serve"]
