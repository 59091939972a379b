//go:build !(linux || darwin)

package executor

// reserveMemory: no reservation here; linear memories grow as slices.
func reserveMemory(uint64) ([]byte, bool) { return nil, false }

func releaseMemory([]byte) {}
