# reactmesh image: one process per container, its role chosen by the arguments, e.g.
#   docker run reactmesh:0.1.0 --target=edge --config=/etc/reactmesh/edge.toml
# (REACTMESH_TARGET and REACTMESH_CONFIG work too). k8s/ runs it as UID 10001 with a read-only root filesystem.
# The gateway's overlay page (region_node/gateway/static/) is package data, installed by `pip install .`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 reactmesh \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin reactmesh

WORKDIR /src
COPY . .
RUN pip install . && rm -rf /src

WORKDIR /
USER 10001:10001
EXPOSE 7100 7200 7300 7301 8080 9100
ENTRYPOINT ["reactmesh", "serve"]
