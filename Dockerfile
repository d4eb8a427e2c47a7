# syntax=docker/dockerfile:1
#
# The remediator daemon as a container image. docs/operations.md describes how to run it.
#
#   docker build -t remediator .
#   docker run --rm -p 9464:9464 -v "$PWD/rules:/etc/remediator/rules:ro" \
#     -e REMEDIATOR_NATS_URL=nats://nats:4222 remediator
#
# Configuration is by REMEDIATOR_* environment variables (one per `run` flag); the image
# ships no rules: mount them at /etc/remediator/rules.

# The Python the lock file was resolved for.
ARG PYTHON_VERSION=3.11

# --- build: the project and every dependency as wheels in /wheels -----------------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md requirements-run.txt ./
COPY remediator ./remediator
# The dependencies at the versions CI tested, hashes checked; then the project on top.
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements-run.txt
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- final: the wheels installed, nothing else from the build ---------------------------
FROM python:${PYTHON_VERSION}-slim

# tini as PID 1: SIGTERM reaches the daemon even before it installs its own handlers
# (PID 1 ignores signals it has no handler for), and children are reaped.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# Installed from the build stage's wheels only: no index, no compiler, no build tools here.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --root-user-action=ignore --no-index --find-links=/wheels remediator

# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 remediator \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/remediator \
       --create-home --shell /usr/sbin/nologin remediator \
    && mkdir -p /etc/remediator/rules

# Outside a container the listener stays on loopback (127.0.0.1:9464) by default; inside,
# it must be reachable by health probes and Prometheus, so it listens on every interface.
# REMEDIATOR_DATA_DIR is only used by the embedded nats-server (no REMEDIATOR_NATS_URL).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REMEDIATOR_RULES=/etc/remediator/rules \
    REMEDIATOR_HTTP=0.0.0.0:9464 \
    REMEDIATOR_DATA_DIR=/var/lib/remediator/nats

USER 10001:10001
WORKDIR /var/lib/remediator
EXPOSE 9464

# Liveness of the process, on the port REMEDIATOR_HTTP names (no curl in the slim image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('REMEDIATOR_HTTP', '0.0.0.0:9464').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--", "remediator"]
CMD ["run"]
