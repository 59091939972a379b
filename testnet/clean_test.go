package testnet

import "testing"

func TestIsNodeHomeName(t *testing.T) {
	for name, want := range map[string]bool{
		"node-0": true, "node-12": true, "node-007": true,
		"node-": false, "node": false, "node-1a": false, "node--1": false,
		"xnode-1": false, "node-1/": false, "Node-1": false, "node-1\n": false, "": false,
	} {
		if got := isNodeHomeName(name); got != want {
			t.Errorf("isNodeHomeName(%q) = %v, want %v", name, got, want)
		}
	}
}
