FROM python:3.11-slim
WORKDIR /app
# dependencies first, in their own layer: a source change does not reinstall them
COPY pyproject.toml README.md ./
RUN mkdir -p producer workers shared monitoring && touch producer/__init__.py workers/__init__.py shared/__init__.py \
    monitoring/__init__.py && pip install --no-cache-dir . && pip uninstall -y agentq
COPY producer producer
COPY workers workers
COPY shared shared
COPY monitoring monitoring
RUN pip install --no-cache-dir --no-deps .
# Workers and Flower run as an unprivileged user.
RUN useradd --create-home agentq
USER agentq
HEALTHCHECK --interval=30s --timeout=15s --retries=3 CMD celery -A workers inspect ping -d celery@$HOSTNAME --timeout 5 || exit 1
CMD ["celery", "-A", "workers", "worker", "--loglevel=INFO", "--hostname=celery@%h"]
