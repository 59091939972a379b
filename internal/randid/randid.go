// Package randid makes the random identifiers dms hands out: job IDs,
// allocation IDs, network IDs of test networks.
package randid

import (
	"crypto/rand"
	"encoding/hex"
)

// Hex returns n random bytes in hex (2n characters). crypto/rand does not
// fail on the platforms Go supports (it panics itself if it ever did), so
// neither does Hex.
func Hex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
