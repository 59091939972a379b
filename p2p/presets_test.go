package p2p

import (
	"testing"

	"github.com/libp2p/go-libp2p/p2p/host/autonat"
)

// TestLocalPresetRunsNoAutoNAT: a loopback host answers its reachability
// from the preset instead of running AutoNAT's loop, which subscribes to
// every identify event of the host; a host left to decide runs it.
func TestLocalPresetRunsNoAutoNAT(t *testing.T) {
	type natHost interface{ GetAutoNat() autonat.AutoNAT }
	for _, tc := range []struct {
		name        string
		opts        []Option
		wantAmbient bool
	}{
		{"local preset", nil, false},
		{"reachability auto", []Option{WithReachability("auto")}, true},
	} {
		h := newTestHost(t, tc.opts...)
		nh, ok := h.host.(natHost)
		if !ok {
			t.Fatalf("%s: libp2p host %T does not expose its AutoNAT", tc.name, h.host)
		}
		_, ambient := nh.GetAutoNat().(*autonat.AmbientAutoNAT)
		if ambient != tc.wantAmbient {
			t.Errorf("%s: AutoNAT %T, want the ambient loop: %v", tc.name, nh.GetAutoNat(), tc.wantAmbient)
		}
	}
}
