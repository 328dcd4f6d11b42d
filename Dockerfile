# replbot: the Telegram bot only (PostgreSQL and SSH targets are reached over the network).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --create-home --uid 10001 replbot \
 && mkdir -p /etc/replbot /var/lib/replbot \
 && chown replbot:replbot /var/lib/replbot

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY handlers ./handlers
RUN pip install .

USER replbot
VOLUME ["/var/lib/replbot"]
# Mount the config (and SSH key, known_hosts, passfile) read-only under /etc/replbot.
CMD ["replbot", "run", "--config", "/etc/replbot/config.toml"]
