# The snap image: Debian 12 slim, built in one stage and run from another that holds only
# the runtime libraries and the database clients (PostgreSQL 15's pg_dump, MariaDB's client).
#
#   podman build -t snap .            (or docker build; BASE picks another Debian 12 base)
#   podman run --rm -v snap-state:/var/lib/snap snap snap list
#
# The tools run as the user snap (10001); the state directory (revert's journal and locks,
# the host key, the default local store) is the volume /var/lib/snap. README.md, "The
# container image", says how to use another pg_dump major (SNAP_PG_BINDIR).
ARG BASE=docker.io/library/debian:12-slim

FROM ${BASE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc make pkg-config libc6-dev libarchive-dev libzstd-dev libcurl4-openssl-dev \
      libjansson-dev libinih-dev libssl-dev libpq-dev libmariadb-dev libyaml-dev libxml2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY common common
COPY storage storage
COPY catalog catalog
COPY engines engines
COPY snapshot snapshot
COPY restore restore
COPY cmd cmd
COPY docs docs
COPY scripts scripts
COPY README.md ./
RUN make -j"$(nproc)" all \
 && make install DESTDIR=/out PREFIX=/usr

FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libarchive13 libzstd1 libcurl4 libjansson4 libinih1 libssl3 libpq5 libmariadb3 \
      libyaml-0-2 libxml2 ca-certificates postgresql-client-15 mariadb-client zstd passwd \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 snap \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/snap --no-create-home \
      --shell /usr/sbin/nologin snap \
 && install -d -o snap -g snap -m 0700 /var/lib/snap
COPY --from=build /out/usr/ /usr/
ENV SNAP_STATE_DIR=/var/lib/snap \
    SNAP_STORE=/var/lib/snap/store
VOLUME /var/lib/snap
USER 10001:10001
WORKDIR /var/lib/snap
CMD ["snap", "--help"]
