# feedbot's container image: the wheel is built in one stage and installed, with only its runtime
# dependencies, into a virtualenv that a slim, non-root runtime stage copies. Nothing secret is in
# the image: configuration is a file mounted at /etc/feedbot/feedbot.yaml, secrets are environment
# variables (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, FEEDBOT_WEBHOOK_SECRET, ...) set at run time.
#
# tests/functional/test_wheel.py builds the same wheel with the same command, installs it into a
# fresh virtualenv and starts it exactly as ENTRYPOINT + CMD below do.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm


FROM ${PYTHON_IMAGE} AS build

# pip's own cache would only bloat the layers; bytecode is compiled at install time below.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Only what the wheel is built from (.dockerignore keeps everything else out of the context), so
# a change to the tests, docs or charts does not invalidate this layer or the ones after it.
COPY pyproject.toml README.md ./
COPY feedbot ./feedbot

# The project's wheel alone, without dependencies: the artifact this stage exists to produce.
RUN pip wheel --no-deps --wheel-dir /wheels .

# A virtualenv holding the wheel and its runtime dependencies only (no [dev] or [demo] extras).
# Every dependency ships manylinux wheels, so no compiler is needed; the runtime stage copies
# this one directory and gets no pip cache, no build tools and no source tree.
RUN python -m venv /opt/feedbot \
 && /opt/feedbot/bin/pip install /wheels/feedbot-*.whl \
 && /opt/feedbot/bin/pip uninstall --yes pip


FROM ${PYTHON_IMAGE} AS runtime

# PATH finds the venv's `feedbot`; FEEDBOT_CONFIG is where the config file is mounted. Bytecode
# was compiled in the build stage and the root filesystem may be read-only, so never write .pyc.
# matplotlib (the thread's charts) keeps its font list in MPLCONFIGDIR: /tmp is writable even
# on a read-only root filesystem (the chart mounts an emptyDir there).
ENV PATH=/opt/feedbot/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    FEEDBOT_CONFIG=/etc/feedbot/feedbot.yaml

# A fixed, unprivileged uid/gid, so Kubernetes' runAsNonRoot can verify it without a name lookup.
# /var/lib/feedbot is the working directory: SQLite's default feedbot.db lands there (mount a
# volume on it for a single replica); several replicas use PostgreSQL and write nothing locally.
RUN groupadd --system --gid 10001 feedbot \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/feedbot \
    --shell /usr/sbin/nologin feedbot \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/feedbot /etc/feedbot

# The installed application, owned by root and therefore read-only to the process.
COPY --from=build /opt/feedbot /opt/feedbot

USER 10001:10001
WORKDIR /var/lib/feedbot
EXPOSE 8080

# `feedbot` is the entry point and `serve` the default command, so the same image also runs
# `migrate`, `check-config /etc/feedbot/feedbot.yaml` or `tick` when given that command instead.
# In a container the server must listen on every interface, not the file's default 127.0.0.1.
ENTRYPOINT ["feedbot"]
CMD ["serve", "--host", "0.0.0.0"]
