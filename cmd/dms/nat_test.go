package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/examples"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/internal/poll"
	"github.com/dms-project/dms/internal/randid"
	"github.com/dms-project/dms/node"
)

// natLab is a set of network namespaces the test made: a "public" segment
// (a bridge in the relay's namespace) and, per private network, a router
// that masquerades its hosts behind its public address. Every address is
// in 10.99/16 and exists only inside these namespaces; nothing is routed
// out of them.
type natLab struct {
	t      *testing.T
	suffix string
	netns  []string
}

func (l *natLab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *natLab) in(ns string, args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput(); err != nil {
		l.t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
}

func (l *natLab) addNS(role string) string {
	l.t.Helper()
	ns := "dms" + l.suffix + role
	l.ip("netns", "add", ns)
	l.netns = append(l.netns, ns)
	l.in(ns, "ip", "link", "set", "lo", "up")
	return ns
}

// newNATLab makes the public namespace with its bridge at 10.99.0.1, or
// skips the test where namespaces cannot be made.
func newNATLab(t *testing.T) (*natLab, string) {
	if os.Geteuid() != 0 {
		t.Skip("the NAT test makes network namespaces, which needs root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the NAT test needs %s (Debian: iproute2, iptables)", tool)
		}
	}
	l := &natLab{t: t, suffix: randid.Hex(2)}
	probe := "dms" + l.suffix + "probe"
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("cannot make a network namespace here: %v: %s", err, out)
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	t.Cleanup(func() {
		for _, ns := range l.netns {
			// Deleting a namespace deletes its veth ends, and so their peers.
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	pub := l.addNS("pub")
	l.in(pub, "ip", "link", "add", "br0", "type", "bridge")
	l.in(pub, "ip", "addr", "add", "10.99.0.1/24", "dev", "br0")
	l.in(pub, "ip", "link", "set", "br0", "up")
	return l, pub
}

// addNAT adds router n (public address 10.99.0.1+n) and one host behind it
// at 10.99.n.2, and returns the host's namespace.
func (l *natLab) addNAT(pub string, n int) string {
	rt := l.addNS(fmt.Sprintf("rt%d", n))
	hostNS := l.addNS(fmt.Sprintf("h%d", n))
	up, down := fmt.Sprintf("v%su%d", l.suffix, n), fmt.Sprintf("v%sd%d", l.suffix, n)
	// Router's uplink, its far end on the public bridge.
	l.ip("link", "add", up, "netns", rt, "type", "veth", "peer", "name", up+"b", "netns", pub)
	l.in(pub, "ip", "link", "set", up+"b", "master", "br0")
	l.in(pub, "ip", "link", "set", up+"b", "up")
	l.in(rt, "ip", "addr", "add", fmt.Sprintf("10.99.0.%d/24", 1+n), "dev", up)
	l.in(rt, "ip", "link", "set", up, "up")
	// The private link.
	l.ip("link", "add", down, "netns", rt, "type", "veth", "peer", "name", "eth0", "netns", hostNS)
	l.in(rt, "ip", "addr", "add", fmt.Sprintf("10.99.%d.1/24", n), "dev", down)
	l.in(rt, "ip", "link", "set", down, "up")
	l.in(hostNS, "ip", "addr", "add", fmt.Sprintf("10.99.%d.2/24", n), "dev", "eth0")
	l.in(hostNS, "ip", "link", "set", "eth0", "up")
	l.in(hostNS, "ip", "route", "add", "default", "via", fmt.Sprintf("10.99.%d.1", n))
	// A NAT: forward out, masquerade, let only replies back in.
	l.in(rt, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	l.in(rt, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", up, "-j", "MASQUERADE")
	l.in(rt, "iptables", "-A", "FORWARD", "-i", up, "-o", down, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT")
	l.in(rt, "iptables", "-A", "FORWARD", "-i", up, "-o", down, "-j", "DROP")
	return hostNS
}

// startIn starts `dms run` inside namespace ns and stops it when the test
// ends.
func startIn(t *testing.T, bin, ns, dir string, args ...string) {
	t.Helper()
	logf, err := os.Create(dir + ".log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, bin, "--home", dir, "--log-level", "debug", "run", "--listen", "/ip4/0.0.0.0/tcp/4001",
		// The machine is shared with other tests: its load is not an
		// owner's, and must not shrink the provider's offer.
		"--monitor-interval", "0"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		timer := time.AfterFunc(20*time.Second, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		_ = cmd.Wait()
		timer.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(dir + ".log")
			t.Logf("log of %s:\n%s", filepath.Base(dir), tail(string(b), 4000))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func peerIDOf(t *testing.T, dir string) peer.ID {
	t.Helper()
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	k, err := h.Identity()
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestJobAcrossTwoNATs: a relay and bootstrap node on the "public"
// segment, a provider behind one NAT and a requester behind another; a job
// submitted from the requester runs on the provider. The two can only
// reach each other through the relay unless hole punching turns the
// relayed connection into a direct one; the test logs which it was.
func TestJobAcrossTwoNATs(t *testing.T) {
	t.Parallel()
	lab, pub := newNATLab(t)
	provNS, reqNS := lab.addNAT(pub, 1), lab.addNAT(pub, 2)
	bin := buildDMS(t)
	root := t.TempDir()
	relay, prov, req := filepath.Join(root, "relay"), filepath.Join(root, "prov"), filepath.Join(root, "req")
	for _, d := range []string{relay, prov, req} {
		if r := dmsExec(t, bin, "--home", d, "init"); r.code != 0 {
			t.Fatalf("init: %+v", r)
		}
	}
	if r := dmsExec(t, bin, "--home", prov, "onboard", "--cpu", "0.5", "--memory", "256MiB", "--disk", "256MiB", "--skip-benchmark"); r.code != 0 {
		t.Fatalf("onboard: %+v", r)
	}
	network := "nat-" + lab.suffix
	boot := fmt.Sprintf("/ip4/10.99.0.1/tcp/4001/p2p/%s", peerIDOf(t, relay))
	startIn(t, bin, pub, relay, "--network", network, "--relay-service", "--dht-mode", "server")
	startIn(t, bin, provNS, prov, "--network", network, "--bootstrap", boot, "--reachability", "private")
	startIn(t, bin, reqNS, req, "--network", network, "--bootstrap", boot, "--reachability", "private")

	topicPeers := func(dir string) int {
		r := dmsExec(t, bin, "--home", dir, "status", "--json")
		var st node.Status
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
			return 0
		}
		return st.TopicPeers
	}
	poll.Until(t, 3*time.Minute, "provider and requester on the topic through the relay", func() bool {
		return topicPeers(prov) > 0 && topicPeers(req) > 0
	})

	wasm := filepath.Join(root, "tiny.wasm")
	if err := os.WriteFile(wasm, examples.TinyWasm, 0o600); err != nil {
		t.Fatal(err)
	}
	provID := peerIDOf(t, prov)
	var rec node.JobRecord
	var last result
	// Each side needs its relay reservation before the other can reach
	// it; until then bids or invocations fail and the job is tried again.
	poll.Until(t, 3*time.Minute, "a job from the requester to complete on the provider", func() bool {
		last = dmsExec(t, bin, "--home", req, "job", "submit", "--cpu", "0.1", "--memory", "16MiB", "--duration", "30s", "--wasm", wasm, "--json")
		rec = node.JobRecord{}
		return json.Unmarshal([]byte(last.stdout), &rec) == nil && rec.State == node.JobCompleted
	})
	if rec.Provider != provID || !strings.Contains(string(rec.Result.Stdout), "tiny job ok") {
		t.Fatalf("job ran on %s with output %q, want %s and \"tiny job ok\" (last: %+v)", rec.Provider, rec.Result.Stdout, provID, last)
	}
	// How the requester reaches the provider: a circuit address is the relay.
	via := "unknown"
	r := dmsExec(t, bin, "--home", req, "peers", "--json")
	var pr struct {
		Peers []node.PeerInfo `json:"peers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &pr); err != nil {
		t.Fatalf("peers --json: %v: %s", err, r.stdout)
	}
	for _, p := range pr.Peers {
		if p.ID != provID {
			continue
		}
		via = "a direct connection (hole punched)"
		for _, a := range p.Addrs {
			if strings.Contains(a, "p2p-circuit") {
				via = "the circuit relay (" + a + ")"
			}
		}
	}
	t.Logf("job %s ran across two NATs; the requester reached the provider through %s", rec.ID, via)
	if via == "unknown" {
		t.Fatalf("the requester holds no connection to the provider after the job: %s", r.stdout)
	}
}
