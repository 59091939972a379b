# The dms node as a container image: a static binary on an empty base,
# run as a numeric non-root user, its home on a volume.
#
#   docker build -t dms .
#   docker run --rm -v dms:/data dms init
#   docker run --rm -v dms:/data dms onboard --cpu 1 --memory 1GiB --disk 1GiB
#   docker run -d --name dms -v dms:/data -p 4001:4001 -p 4001:4001/udp dms
#
# The builder is an argument so that a build without a registry can name a
# local image with Go in it (the test in dist/ does). The builder runs no
# shell, only Go, for the same reason.
ARG GO_IMAGE=golang:1.26

FROM ${GO_IMAGE} AS build
ARG VERSION=
# A module proxy other than the default, e.g. a file:// copy of a module
# cache for a build without network.
ARG GOPROXY
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-ldflags=-X=main.version=${VERSION}
# WORKDIR makes the home's mount point without a shell; it is copied into
# the image owned by the node's user.
WORKDIR /rootfs/data
WORKDIR /src
COPY . .
# The tag leaves out urfave/cli's man-page generator (docs/performance.md).
RUN ["go", "build", "-trimpath", "-tags", "urfave_cli_no_docs", "-o", "/rootfs/dms", "./cmd/dms"]

FROM scratch
COPY --from=build /rootfs/dms /usr/local/bin/dms
# Temporary files (the native executor's job directories) need a /tmp that
# anyone may write; the builder's has mode 1777.
COPY --from=build /tmp /tmp
COPY --from=build --chown=65532:65532 /rootfs/data /data
ENV DMS_HOME=/data PATH=/usr/local/bin
USER 65532:65532
VOLUME ["/data"]
# libp2p: TCP and QUIC on the same port (dms run's default listen addresses).
EXPOSE 4001/tcp 4001/udp
ENTRYPOINT ["dms"]
CMD ["run"]
