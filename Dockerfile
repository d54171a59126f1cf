FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY producer producer
COPY workers workers
COPY shared shared
COPY monitoring monitoring
RUN pip install --no-cache-dir .
# Workers and Flower run as an unprivileged user.
RUN useradd --create-home agentq
USER agentq
CMD ["celery", "-A", "workers", "worker", "--loglevel=INFO"]
