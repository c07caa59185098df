# scanpay-sim: both sims and the `scanpay` command in one image.
#   docker build -t scanpay-sim .                  # the sims (default target: app)
#   docker build --target load -t scanpay-load .   # the same plus Locust, for load tests
# docker-compose.yml builds both; docs/operations.md explains how the services fit together.

FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, from the project metadata alone, so a code change does not redo them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps . \
 && groupadd --gid 10001 scanpay \
 && useradd --create-home --uid 10001 --gid 10001 scanpay \
 && mkdir -p /data && chown scanpay:scanpay /data

# Locust's journeys (loadtests/) need Locust; only the `load` image carries it.
FROM runtime AS load
ARG LOCUST_VERSION=2.47.0
RUN pip install "locust==${LOCUST_VERSION}"
USER 10001:10001
EXPOSE 8089
CMD ["locust", "-f", "loadtests/locustfile.py"]

FROM runtime AS app
USER 10001:10001
# SQLite files of `scanpay serve` (mount a volume here to keep them); compose uses PostgreSQL.
VOLUME ["/data"]
EXPOSE 8710 8720
CMD ["scanpay", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]
