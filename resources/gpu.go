package resources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/dms-project/dms/capability"
)

// nvidiaSMIArgs asks for one CSV line per GPU: "0, GPU-8f..., NVIDIA H100 80GB HBM3, 81559"
// (memory in MiB).
var nvidiaSMIArgs = []string{"--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"}

const (
	// gpuDetectTimeout bounds nvidia-smi: with a wedged driver it can hang for minutes.
	gpuDetectTimeout = 10 * time.Second
	// maxSMIOutput bounds what we read from nvidia-smi; 64 GPUs take about 6 KiB.
	maxSMIOutput = 64 << 10
	maxGPUField  = 256
)

// DetectGPUs lists the NVIDIA GPUs through nvidia-smi. Where nvidia-smi is not
// installed, or is installed but finds no driver or no device, the machine has
// no usable GPU: that is nil with no error. An error means nvidia-smi ran and
// misbehaved (timed out, printed something unreadable).
func DetectGPUs(ctx context.Context) ([]capability.GPU, error) {
	return detectGPUsWith(ctx, "nvidia-smi", gpuDetectTimeout)
}

func detectGPUsWith(ctx context.Context, tool string, timeout time.Duration) ([]capability.GPU, error) {
	path, err := exec.LookPath(tool)
	if err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, nvidiaSMIArgs...)
	var out limitedBuffer
	out.limit = maxSMIOutput
	cmd.Stdout = &out
	cmd.Stderr = &limitedBuffer{limit: 4 << 10}
	cmd.WaitDelay = time.Second // do not wait forever on pipes held by a stuck child
	err = cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("detect gpus: %s did not answer within %v", tool, timeout)
	}
	if err != nil {
		// Exit status 6 is "no devices", 9 "no driver"; any failure means no GPU we can use.
		slog.Default().Debug("nvidia-smi failed; no gpus", "subsystem", "resources", "err", err, "stderr", cmd.Stderr.(*limitedBuffer).String())
		return nil, nil
	}
	if out.overflow {
		return nil, fmt.Errorf("detect gpus: %s printed more than %d bytes", tool, maxSMIOutput)
	}
	gpus, err := ParseNvidiaSMI(out.Bytes())
	if err != nil {
		return nil, fmt.Errorf("detect gpus: %w", err)
	}
	return gpus, nil
}

// ErrBadGPUList means nvidia-smi's output could not be read.
var ErrBadGPUList = errors.New("unreadable gpu list")

// ParseNvidiaSMI reads the output of
// `nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`.
// It is strict: a line it cannot read is an error naming the line, since a
// half-understood GPU must not be offered. A memory of "[N/A]" reads as 0.
func ParseNvidiaSMI(out []byte) ([]capability.GPU, error) {
	if len(out) > maxSMIOutput {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadGPUList, len(out), maxSMIOutput)
	}
	var gpus []capability.GPU
	seen := map[int]bool{}
	for i, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "No devices were found") {
			return nil, nil
		}
		if len(gpus) == capability.MaxGPUs {
			return nil, fmt.Errorf("%w: more than %d gpus", ErrBadGPUList, capability.MaxGPUs)
		}
		g, err := parseSMILine(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadGPUList, i+1, err)
		}
		if seen[g.Index] {
			return nil, fmt.Errorf("%w: line %d: index %d listed twice", ErrBadGPUList, i+1, g.Index)
		}
		seen[g.Index] = true
		gpus = append(gpus, g)
	}
	return gpus, nil
}

func parseSMILine(line string) (capability.GPU, error) {
	f := strings.Split(line, ",")
	if len(f) < 4 {
		return capability.GPU{}, fmt.Errorf("want 4 comma-separated fields (index, uuid, name, memory MiB), got %d", len(f))
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	// A name could contain a comma; index, uuid and memory cannot.
	idxS, uuid, memS := f[0], f[1], f[len(f)-1]
	name := strings.Join(f[2:len(f)-1], ",")
	idx, err := strconv.Atoi(idxS)
	if err != nil || idx < 0 || idx > 4095 {
		return capability.GPU{}, fmt.Errorf("index %q: want a number 0-4095", clip(idxS))
	}
	if !plainField(uuid) || strings.ContainsRune(uuid, ' ') {
		return capability.GPU{}, fmt.Errorf("uuid %q: want a non-empty printable word of at most %d bytes", clip(uuid), maxGPUField)
	}
	if !plainField(name) {
		return capability.GPU{}, fmt.Errorf("name %q: want non-empty printable text of at most %d bytes", clip(name), maxGPUField)
	}
	var memBytes uint64
	if !strings.HasPrefix(memS, "[") { // "[N/A]", "[Not Supported]"
		mib, err := strconv.ParseUint(memS, 10, 64)
		if err != nil || mib > 1<<40 {
			return capability.GPU{}, fmt.Errorf("memory %q: want a number of MiB", clip(memS))
		}
		memBytes = mib * capability.MiB
	}
	return capability.GPU{Vendor: "NVIDIA", Model: name, Memory: memBytes, Index: idx, UUID: uuid}, nil
}

func plainField(s string) bool {
	if s == "" || len(s) > maxGPUField {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// limitedBuffer keeps the first limit bytes written and notes the rest, so a
// runaway child cannot fill our memory. It does not embed bytes.Buffer: its
// ReadFrom would let io.Copy bypass the limit.
type limitedBuffer struct {
	buf      bytes.Buffer
	limit    int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room < len(p) {
		b.overflow = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *limitedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *limitedBuffer) String() string { return b.buf.String() }
