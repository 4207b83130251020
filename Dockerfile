# chatgate in a container: `docker build -t chatgate .`, then see README "Deployment".
# One process serves the webhooks and runs the answer jobs; state is in /data (SQLite) unless
# CHATGATE_STORE points at Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin chatgate \
    && mkdir -p /data \
    && chown chatgate:chatgate /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY chatgate ./chatgate
RUN pip install . && rm -rf /src

USER chatgate
WORKDIR /data
ENV CHATGATE_HOST=0.0.0.0 \
    CHATGATE_PORT=8000 \
    CHATGATE_STORE=sqlite:////data/chatgate.db \
    CHATGATE_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8000

# SIGTERM drains: webhooks get 503, running answers get CHATGATE_SHUTDOWN_GRACE (20 s) to
# finish. Docker kills after 10 s unless told otherwise: run with --stop-timeout 30.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CHATGATE_PORT', '8000'), timeout=2)"]

CMD ["chatgate", "serve"]
