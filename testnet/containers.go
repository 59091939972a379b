package testnet

// Container mode of the process test network (dms testnet up --containers):
// each node is a `dms run` in a container of its own, on a Docker network
// that the test network creates (internal: no route out), so each node has
// an address of its own and a fault injected into one node's network
// namespace (packets dropped, lost or delayed) is real, while the nodes'
// homes, control sockets and logs stay where a process network has them.
// The image is FROM scratch with the static dms binary, built here: no
// registry is needed.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrNoDocker: container mode needs a Docker engine that answers.
var ErrNoDocker = errors.New("no Docker engine answers here")

// containers starts the nodes of one test network as containers.
type containers struct {
	rec     *Record
	network string // the Docker network's name
	image   string
}

// DockerAvailable says why container mode cannot run here, or nil.
func DockerAvailable(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("%w: no docker command: %v", ErrNoDocker, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return fmt.Errorf("%w: docker info: %v: %s", ErrNoDocker, err, bytes.TrimSpace(out))
	}
	return nil
}

// newContainers checks the engine and the binary, builds the image (once
// per binary) and creates the test network's Docker network.
func newContainers(ctx context.Context, rec *Record) (*containers, error) {
	if err := DockerAvailable(ctx); err != nil {
		return nil, err
	}
	if err := checkStatic(rec.Binary); err != nil {
		return nil, err
	}
	c := &containers{rec: rec, network: "dms-" + rec.Network}
	var err error
	if c.image, err = buildImage(ctx, rec.Binary, filepath.Join(rec.Dir, imageDir)); err != nil {
		return nil, err
	}
	if out, err := docker(ctx, "network", "create", "--internal", "--driver", "bridge", c.network); err != nil {
		return nil, fmt.Errorf("create the Docker network %s: %w: %s", c.network, err, out)
	}
	return c, nil
}

// checkStatic refuses a dynamically linked binary: a FROM scratch image has
// no C library to load it with.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("container mode: read %s: %w", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("container mode needs a statically linked dms, and %s is dynamically linked: build it with CGO_ENABLED=0 go build -o dms ./cmd/dms", bin)
		}
	}
	return nil
}

// imageDir is where, in the test network's directory, the node image is
// built from.
const imageDir = "image"

// buildImage builds dms-testnet:<hash of the binary> from the binary,
// unless it exists already.
func buildImage(ctx context.Context, bin, dir string) (string, error) {
	sum, err := fileHash(bin)
	if err != nil {
		return "", err
	}
	tag := "dms-testnet:" + sum[:12]
	if _, err := docker(ctx, "image", "inspect", tag); err == nil {
		return tag, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := copyFile(bin, filepath.Join(dir, "dms"), 0o755); err != nil {
		return "", err
	}
	dockerfile := "FROM scratch\nCOPY dms /dms\nENTRYPOINT [\"/dms\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o600); err != nil {
		return "", err
	}
	if out, err := docker(ctx, "build", "--quiet", "--tag", tag, dir); err != nil {
		return "", fmt.Errorf("build the node image: %w: %s", err, out)
	}
	_ = os.Remove(filepath.Join(dir, "dms")) // the image has it
	return tag, nil
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// start runs one node: `docker run` in the foreground, as the node's
// process (so its output lands in node.log, SIGTERM to it reaches dms, and
// the container is removed when dms ends). The test network's directory is
// mounted at the same path, so homes and sockets are where a process
// network has them.
func (c *containers) start(ctx context.Context, args []string, n Process) (*child, error) {
	name := c.containerName(n.Name)
	run := []string{"run", "--rm", "--name", name, "--hostname", n.Name, "--network", c.network,
		"--user", fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid()), "--tmpfs", "/tmp",
		"--volume", c.rec.Dir + ":" + c.rec.Dir, c.image}
	p, err := startNodeProcess("docker", append(run, args...), n, c.rec.Dir)
	if err != nil {
		return nil, err
	}
	p.node.Container = name
	return p, nil
}

func (c *containers) containerName(node string) string { return c.rec.Network + "-" + node }

// removeNetwork removes the Docker network once its containers are gone.
func (c *containers) removeNetwork(ctx context.Context) error {
	return RemoveDockerNetwork(ctx, c.network)
}

// RemoveDockerNetwork removes a test network's Docker network (and any of
// its containers still there).
func RemoveDockerNetwork(ctx context.Context, network string) error {
	if network == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if out, err := docker(ctx, "ps", "--all", "--quiet", "--filter", "network="+network); err == nil {
		if ids := strings.Fields(out); len(ids) > 0 {
			_, _ = docker(ctx, append([]string{"rm", "--force"}, ids...)...)
		}
	}
	if out, err := docker(ctx, "network", "rm", network); err != nil && !strings.Contains(out, "not found") {
		return fmt.Errorf("remove the Docker network %s: %w: %s", network, err, out)
	}
	return nil
}

func docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Fault is what Inject does to one node's network.
type Fault struct {
	// Partition drops every packet to and from the node (no RST, no ICMP:
	// as a cut cable looks), on its network interface; its control socket
	// still answers.
	Partition bool
	// Loss drops this share (0 to 1) of its packets at random (netem).
	Loss float64
	// Delay adds this much to each packet it sends (netem).
	Delay time.Duration
}

// Inject applies f to node's network namespace, replacing any fault there;
// the zero Fault heals it. Only container networks have a namespace per
// node (a process network shares this machine's loopback). It needs root
// and the iptables and tc commands here (Debian: iptables, iproute2).
func Inject(ctx context.Context, rec *Record, node string, f Fault) error {
	if !rec.Containers {
		return errors.New("faults need a container network (dms testnet up --containers): the nodes of a process network share this machine's loopback")
	}
	i := slices.IndexFunc(rec.Nodes, func(p Process) bool { return p.Name == node })
	if i < 0 {
		return fmt.Errorf("no node %q in test network %s", node, rec.Network)
	}
	if !(f.Loss >= 0 && f.Loss <= 1) || f.Delay < 0 {
		return fmt.Errorf("fault %+v: want a loss of 0 to 1 and no negative delay", f)
	}
	pid, err := docker(ctx, "inspect", "--format", "{{.State.Pid}}", rec.Nodes[i].Container)
	if err != nil || pid == "0" {
		return fmt.Errorf("%s: its container %s is not running: %v %s", node, rec.Nodes[i].Container, err, pid)
	}
	if _, err := strconv.Atoi(pid); err != nil {
		return fmt.Errorf("%s: container pid %q", node, pid)
	}
	in := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--target", pid, "--net"}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	// Heal first: the rules and the qdisc below are ours alone.
	for _, chain := range []string{"INPUT -i eth0", "OUTPUT -o eth0"} {
		for {
			if _, err := in(append([]string{"iptables", "-D"}, append(strings.Fields(chain), "-j", "DROP")...)...); err != nil {
				break
			}
		}
	}
	_, _ = in("tc", "qdisc", "del", "dev", "eth0", "root")
	if f.Partition {
		for _, chain := range []string{"INPUT -i eth0", "OUTPUT -o eth0"} {
			if out, err := in(append([]string{"iptables", "-I"}, append(strings.Fields(chain), "-j", "DROP")...)...); err != nil {
				return fmt.Errorf("%s: iptables: %w: %s", node, err, out)
			}
		}
	}
	if f.Loss > 0 || f.Delay > 0 {
		args := []string{"tc", "qdisc", "add", "dev", "eth0", "root", "netem"}
		if f.Loss > 0 {
			args = append(args, "loss", strconv.FormatFloat(100*f.Loss, 'f', -1, 64)+"%")
		}
		if f.Delay > 0 {
			args = append(args, "delay", fmt.Sprintf("%dms", f.Delay.Milliseconds()))
		}
		if out, err := in(args...); err != nil {
			return fmt.Errorf("%s: tc: %w: %s", node, err, out)
		}
	}
	return nil
}
