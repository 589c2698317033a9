# syntax=docker/dockerfile:1
# One image for every Juhe process; the command picks it: `python -m services.ledger`, `python -m gateway`,
# `python -m deploy.migrate`, `python -m deploy.dead_letters`. Build: `docker build -t juhe:<version> .`
#
# Stage 1 resolves and installs the runtime dependencies only (the lock pins the dev tools too, so the
# runtime set is re-resolved *constrained by* requirements.lock: same versions, no pytest/ruff/mypy) into
# a virtualenv. Stage 2 copies that virtualenv and the source: no pip, uv or compiler cache in the final
# layers. Pin the base by digest in your registry mirror (`python:3.11.14-slim-trixie@sha256:…`).
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 UV_NO_CACHE=1
WORKDIR /build
RUN python -m venv /opt/juhe-build-tools && /opt/juhe-build-tools/bin/pip install "uv==0.13.8" \
 && python -m venv /opt/venv
COPY pyproject.toml requirements.lock README.md ./
RUN /opt/juhe-build-tools/bin/uv pip compile pyproject.toml --python-version 3.11 \
      --constraint requirements.lock -o /build/runtime.txt \
 && /opt/juhe-build-tools/bin/uv pip install --python /opt/venv/bin/python --no-deps -r /build/runtime.txt

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="juhe" org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH PYTHONPATH=/app HOME=/tmp
RUN groupadd --system --gid 10001 juhe && useradd --system --uid 10001 --gid juhe --no-create-home juhe
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Source only (.dockerignore leaves out tests, benches, docs, caches, the local data directory).
COPY --chown=root:root libs ./libs
COPY --chown=root:root services ./services
COPY --chown=root:root gateway ./gateway
COPY --chown=root:root sandboxes ./sandboxes
COPY --chown=root:root web ./web
COPY --chown=root:root deploy/__init__.py deploy/migrate.py deploy/dead_letters.py ./deploy/
USER 10001:10001
# Liveness of whichever service runs here: its port is the one JUHE_<NAME>_PORT variable it was given.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 CMD ["python", "-c", "import os, urllib.request; port = next((v for k, v in os.environ.items() if k.startswith('JUHE_') and k.endswith('_PORT')), '8000'); urllib.request.urlopen(f'http://127.0.0.1:{port}/livez', timeout=3)"]
CMD ["python", "-m", "gateway"]
