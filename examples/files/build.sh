#!/bin/sh
# Rebuilds files.wasm (examples/embed.go). Run from anywhere:
# go generate ./examples/files
set -eu
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o files.wasm .
