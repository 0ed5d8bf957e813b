# The operator image: `webhook-service operator` (kopf + the listener on 8085), as non-root user 10001.
# It writes nothing outside /tmp, so it runs with a read-only root filesystem (manifests/deployment.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp

WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip install --no-cache-dir . \
    && cd / && rm -rf /src \
    && python -c 'from controller.receivers.schema import ReceiverSchema; ReceiverSchema.load()'

RUN groupadd --system --gid 10001 webhook \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin webhook

USER 10001:10001
WORKDIR /tmp
EXPOSE 8085
ENTRYPOINT ["webhook-service"]
CMD ["operator"]
