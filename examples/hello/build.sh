#!/bin/sh
# Rebuilds hello.wasm, the sample job bundled into the dms binary
# (examples/embed.go). Run from anywhere: go generate ./examples/hello
set -eu
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o hello.wasm .
