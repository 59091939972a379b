// Package examples bundles sample jobs so the CLI demo works without any
// file on disk. Rebuild the modules with `go generate ./examples/...`.
package examples

import _ "embed"

// HelloWasm is examples/hello built for WASI preview 1 (GOOS=wasip1).
//
//go:embed hello/hello.wasm
var HelloWasm []byte

// FilesWasm is examples/files built for WASI preview 1: it reads /inputs
// and writes /outputs.
//
//go:embed files/files.wasm
var FilesWasm []byte
