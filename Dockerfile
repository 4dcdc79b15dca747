# Placeholder until the "ship it" issue: a multi-stage build of the wheel into a slim, non-root
# runtime image whose entry point is `feedbot serve`.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 feedbot
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER feedbot
ENTRYPOINT ["feedbot", "serve", "--config", "/etc/feedbot/feedbot.yaml"]
