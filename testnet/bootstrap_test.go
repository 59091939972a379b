package testnet

import (
	"slices"
	"testing"
)

// TestBootstrapTopology: both networks start in waves no larger than
// waveSize, and each node after the first bootstraps from one to three
// distinct nodes of earlier waves, never from its own wave or later.
func TestBootstrapTopology(t *testing.T) {
	var waves []int
	for first := 0; first < MaxNodes; first = nextWave(first) {
		waves = append(waves, nextWave(first)-first)
	}
	if !slices.Equal(waves[:6], []int{1, 1, 2, 4, 8, 16}) || slices.Max(waves) != waveSize {
		t.Fatalf("wave sizes %v: want each as large as what is up, up to %d", waves, waveSize)
	}
	chosen := make([]int, MaxNodes)
	for i := range MaxNodes {
		peers := bootstrapPeers(i)
		if i == 0 {
			if len(peers) != 0 {
				t.Fatalf("node 0 bootstraps from %v", peers)
			}
			continue
		}
		if len(peers) < 1 || len(peers) > 3 {
			t.Fatalf("node %d bootstraps from %v: want one to three", i, peers)
		}
		for k, j := range peers {
			if j >= waveStart(i) || slices.Contains(peers[:k], j) {
				t.Fatalf("node %d (wave from %d) bootstraps from %v: want distinct nodes of earlier waves", i, waveStart(i), peers)
			}
			chosen[j]++
		}
	}
	// Spread: no node is asked by more than a small share of the network.
	if m := slices.Max(chosen); m > MaxNodes/8 {
		t.Fatalf("one node is the bootstrap peer of %d of %d nodes", m, MaxNodes)
	}
	for n, want := range map[int]int{1: 0, 2: 1, 3: 2, 4: 3, 20: 3, 21: 1, MaxNodes: 1} {
		if got := wantTopicPeers(n); got != want {
			t.Errorf("wantTopicPeers(%d) = %d, want %d", n, got, want)
		}
	}
}
