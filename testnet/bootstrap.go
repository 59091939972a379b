package testnet

// The topology both test networks start with, in-process (StartLocal) and
// processes (Up): nodes start in waves, each node bootstrapping from up to
// three nodes of earlier waves, so that no node has to accept the whole
// network: above its connection limits it would turn the late ones away,
// leaving them knowing nobody. A wave is as large as what is up already,
// up to waveSize.

import (
	"slices"
	"strings"
)

// waveSize bounds how many nodes start at once.
const waveSize = 16

// nextWave is where the wave that starts at first ends.
func nextWave(first int) int { return first + max(1, min(first, waveSize)) }

// waveStart is the first node of node i's wave.
func waveStart(i int) int {
	first := 0
	for nextWave(first) <= i {
		first = nextWave(first)
	}
	return first
}

// bootstrapPeers are the indexes of up to three nodes of the waves before
// node i's (all up by the time it starts), spread over them and the same
// for every run of the same size; none for node 0.
func bootstrapPeers(i int) []int {
	if i == 0 {
		return nil
	}
	up := waveStart(i)
	var out []int
	for _, j := range []int{(i * 31) % up, (i*17 + 5) % up, (i*7 + 3) % up} {
		if !slices.Contains(out, j) {
			out = append(out, j)
		}
	}
	return out
}

// wantTopicPeers is how many peers on the bid-request topic each node of
// a network of n must have before it counts as meeting: a few in a small
// network, so that a job submitted at once is heard widely; one in a large
// one, as more can take minutes on a small machine while the DHT walks
// finish, and one makes every node reachable, which the probe that follows
// confirms.
func wantTopicPeers(n int) int {
	if n > 20 {
		return 1
	}
	return min(n-1, 3)
}

// bootstrapAddrs are the addresses of node i's bootstrapPeers. In a
// container network only the nodes' own addresses serve: loopback is each
// container's own.
func bootstrapAddrs(nodes []Process, i int, containers bool) []string {
	var out []string
	for _, j := range bootstrapPeers(i) {
		for _, a := range nodes[j].Addrs {
			if containers && (strings.Contains(a, "/ip4/127.") || strings.Contains(a, "/ip6/::1/")) {
				continue
			}
			out = append(out, a)
		}
	}
	return out
}
