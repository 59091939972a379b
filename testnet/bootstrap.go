package testnet

import (
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

// bootstrapAddrs are the addresses of up to three nodes started before
// node i, spread over them and the same for every run of the same size.
// In a container network only the nodes' own addresses serve: loopback is
// each container's own.
func bootstrapAddrs(nodes []Process, i int, containers bool) []string {
	if i == 0 {
		return nil
	}
	up := waveStart(i) // the nodes of earlier waves, all up
	var out []string
	seen := map[int]bool{}
	for _, j := range []int{(i * 31) % up, (i*17 + 5) % up, (i*7 + 3) % up} {
		if seen[j] {
			continue
		}
		seen[j] = true
		for _, a := range nodes[j].Addrs {
			if containers && (strings.Contains(a, "/ip4/127.") || strings.Contains(a, "/ip6/::1/")) {
				continue
			}
			out = append(out, a)
		}
	}
	return out
}
