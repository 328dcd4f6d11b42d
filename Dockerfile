# replbot: the Telegram bot only (PostgreSQL and SSH targets are reached over the network).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --create-home --uid 10001 replbot \
 && mkdir -p /etc/replbot /var/lib/replbot \
 && chown replbot:replbot /var/lib/replbot

WORKDIR /app
# Dependencies first, pinned with hashes (requirements.lock, made by pip-compile from
# pyproject.toml): this layer is rebuilt only when the lock changes, and resolves the same
# versions next month as today.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
RUN pip install --no-deps .

USER replbot
VOLUME ["/var/lib/replbot"]
# Mount the config (and SSH key, known_hosts, passfile) read-only under /etc/replbot.
# The health check needs a listener: [metrics] listen = "0.0.0.0:9187" (serves /healthz too),
# or [health] listen = "127.0.0.1:9188" with REPLBOT_HEALTH_URL=http://127.0.0.1:9188/healthz.
# /healthz answers 503 when Telegram polls, the monitor or the alert outbox are stuck.
ENV REPLBOT_HEALTH_URL=http://127.0.0.1:9187/healthz
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['REPLBOT_HEALTH_URL'], timeout=4)"]
CMD ["replbot", "run", "--config", "/etc/replbot/config.toml"]
