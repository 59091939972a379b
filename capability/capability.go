// Package capability describes compute resources: what a provider offers, what
// a job requires, and what an allocation holds. It is plain data and
// arithmetic; it knows nothing of the machine, the ledger or the network.
package capability

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
)

// Sentinel errors callers branch on.
var (
	// ErrInsufficient means a subtraction would go below zero in some dimension.
	ErrInsufficient = errors.New("insufficient capability")
	// ErrOverflow means an addition would not fit in the value's range.
	ErrOverflow = errors.New("capability overflow")
)

// Capability is a bundle of resources. CPU, Memory, Disk and GPUs are additive;
// Connectivity, Price and Time describe the bundle and are carried along
// unchanged by Add and Subtract (the receiver's are kept).
type Capability struct {
	CPU          CPU              `json:"cpu"`
	Memory       uint64           `json:"memory"` // bytes
	Disk         uint64           `json:"disk"`   // bytes
	GPUs         []GPU            `json:"gpus,omitempty"`
	Connectivity Connectivity     `json:"connectivity,omitzero"`
	Price        PriceInformation `json:"price,omitzero"`
	Time         TimeInformation  `json:"time,omitzero"`
}

// CPU is an amount of processor. Cores are kept in thousandths so that "1.5
// cores" is exact and sums never drift the way floats would.
type CPU struct {
	MilliCores uint64  `json:"millicores"`
	ClockMHz   float64 `json:"clock_mhz,omitempty"`
	Arch       string  `json:"arch,omitempty"`
	Model      string  `json:"model,omitempty"`
	// Score is the benchmark score of the machine (higher is faster). It
	// describes the cores rather than counting them, so it is not summed.
	Score float64 `json:"score,omitempty"`
}

// Cores returns the amount as a fraction of cores.
func (c CPU) Cores() float64 { return float64(c.MilliCores) / 1000 }

// GPU is one accelerator. As a requirement, empty fields mean "any".
type GPU struct {
	Vendor string `json:"vendor,omitempty"`
	Model  string `json:"model,omitempty"`
	Memory uint64 `json:"memory,omitempty"` // bytes
	Index  int    `json:"index"`
	UUID   string `json:"uuid,omitempty"`
}

// Satisfies reports whether g can serve a requirement req: the same UUID
// when req names one, otherwise the same vendor and model where req names
// them and at least req's memory. A model matches as a whole name or as a
// run of whole words of it ("H100" and "H100 80GB" match "NVIDIA H100 80GB
// HBM3"), never as a part of a word ("A10" does not match "A100").
func (g GPU) Satisfies(req GPU) bool {
	if req.UUID != "" {
		return g.UUID == req.UUID
	}
	if req.Vendor != "" && !strings.EqualFold(g.Vendor, req.Vendor) {
		return false
	}
	if req.Model != "" && !ModelMatches(g.Model, req.Model) {
		return false
	}
	return g.Memory >= req.Memory
}

// ModelMatches reports whether want names model: the same words, or a run
// of whole words of it, case aside (words are split at spaces and '-').
func ModelMatches(model, want string) bool {
	words := func(s string) []string {
		return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ' ' || r == '-' || r == '_' })
	}
	have, need := words(model), words(want)
	if len(need) == 0 {
		return true
	}
	for i := 0; i+len(need) <= len(have); i++ {
		if slices.Equal(have[i:i+len(need)], need) {
			return true
		}
	}
	return false
}

// Connectivity says how a node can be reached.
type Connectivity struct {
	Reachability string   `json:"reachability,omitempty"` // "public", "private" or "unknown"
	ListenAddrs  []string `json:"listen_addrs,omitempty"`
	BandwidthBps uint64   `json:"bandwidth_bps,omitempty"` // measured, where known
}

// Add returns c with o's additive resources added: the requirement of two
// jobs run together. GPUs are appended.
func (c Capability) Add(o Capability) (Capability, error) {
	out := c
	var err error
	if out.CPU.MilliCores, err = addU(c.CPU.MilliCores, o.CPU.MilliCores, "cpu"); err != nil {
		return Capability{}, err
	}
	if out.Memory, err = addU(c.Memory, o.Memory, "memory"); err != nil {
		return Capability{}, err
	}
	if out.Disk, err = addU(c.Disk, o.Disk, "disk"); err != nil {
		return Capability{}, err
	}
	out.GPUs = append(append([]GPU(nil), c.GPUs...), o.GPUs...)
	if len(out.GPUs) == 0 {
		out.GPUs = nil
	}
	return out, nil
}

// Subtract returns c less o: what is left after o is locked out of c. Taking
// more than there is is ErrInsufficient, never a negative or wrapped amount.
// Each GPU of o takes the first GPU of c that satisfies it.
func (c Capability) Subtract(o Capability) (Capability, error) {
	out := c
	var err error
	if out.CPU.MilliCores, err = subU(c.CPU.MilliCores, o.CPU.MilliCores, "cpu", FormatCPU); err != nil {
		return Capability{}, err
	}
	if out.Memory, err = subU(c.Memory, o.Memory, "memory", FormatBytes); err != nil {
		return Capability{}, err
	}
	if out.Disk, err = subU(c.Disk, o.Disk, "disk", FormatBytes); err != nil {
		return Capability{}, err
	}
	if out.GPUs, err = takeGPUs(c.GPUs, o.GPUs); err != nil {
		return Capability{}, err
	}
	return out, nil
}

// Fits reports whether c fits within avail, that is whether
// avail.Subtract(c) succeeds.
func (c Capability) Fits(avail Capability) bool {
	if c.CPU.MilliCores > avail.CPU.MilliCores || c.Memory > avail.Memory || c.Disk > avail.Disk {
		return false
	}
	_, err := takeGPUs(avail.GPUs, c.GPUs)
	return err == nil
}

// IsZero reports whether c holds no additive resources.
func (c Capability) IsZero() bool {
	return c.CPU.MilliCores == 0 && c.Memory == 0 && c.Disk == 0 && len(c.GPUs) == 0
}

// Equal compares the additive resources of c and o (GPUs in order).
func (c Capability) Equal(o Capability) bool {
	if c.CPU.MilliCores != o.CPU.MilliCores || c.Memory != o.Memory || c.Disk != o.Disk || len(c.GPUs) != len(o.GPUs) {
		return false
	}
	for i := range c.GPUs {
		if c.GPUs[i] != o.GPUs[i] {
			return false
		}
	}
	return true
}

// Min returns, dimension by dimension, the smaller of c and o. GPUs are
// those of c that also appear (by UUID or index) in o. Non-additive fields
// are c's.
func (c Capability) Min(o Capability) Capability {
	out := c
	out.CPU.MilliCores = min(c.CPU.MilliCores, o.CPU.MilliCores)
	out.Memory = min(c.Memory, o.Memory)
	out.Disk = min(c.Disk, o.Disk)
	out.GPUs = nil
	for _, g := range c.GPUs {
		for _, h := range o.GPUs {
			if (g.UUID != "" && g.UUID == h.UUID) || (g.UUID == "" && g.Index == h.Index && g.Model == h.Model) {
				out.GPUs = append(out.GPUs, g)
				break
			}
		}
	}
	return out
}

// Comparison holds, per dimension, -1, 0 or +1 as c is less than, equal to or
// more than o.
type Comparison struct {
	CPU, Memory, Disk, GPUs int
}

// Compare compares the additive resources of c and o dimension by dimension,
// the building block of a CapabilityComparator.
func (c Capability) Compare(o Capability) Comparison {
	return Comparison{
		CPU:    cmpU(c.CPU.MilliCores, o.CPU.MilliCores),
		Memory: cmpU(c.Memory, o.Memory),
		Disk:   cmpU(c.Disk, o.Disk),
		GPUs:   cmpU(uint64(len(c.GPUs)), uint64(len(o.GPUs))),
	}
}

// Dominates reports whether c is at least o in every dimension.
func (r Comparison) Dominates() bool {
	return r.CPU >= 0 && r.Memory >= 0 && r.Disk >= 0 && r.GPUs >= 0
}

// Validate checks the values a user or a peer could get wrong.
func (c Capability) Validate() error {
	if math.IsNaN(c.CPU.ClockMHz) || math.IsInf(c.CPU.ClockMHz, 0) || c.CPU.ClockMHz < 0 {
		return fmt.Errorf("cpu clock %v: want a finite number of MHz >= 0", c.CPU.ClockMHz)
	}
	if math.IsNaN(c.CPU.Score) || math.IsInf(c.CPU.Score, 0) || c.CPU.Score < 0 {
		return fmt.Errorf("cpu score %v: want a finite number >= 0", c.CPU.Score)
	}
	if len(c.GPUs) > MaxGPUs {
		return fmt.Errorf("%d gpus: at most %d accepted", len(c.GPUs), MaxGPUs)
	}
	if err := c.Price.Validate(); err != nil {
		return err
	}
	return c.Time.Validate()
}

// MaxGPUs bounds the GPU list so a peer cannot make matching expensive.
const MaxGPUs = 64

// String prints the additive resources in human units.
func (c Capability) String() string {
	s := fmt.Sprintf("cpu=%s memory=%s disk=%s", FormatCPU(c.CPU.MilliCores), FormatBytes(c.Memory), FormatBytes(c.Disk))
	if len(c.GPUs) > 0 {
		s += fmt.Sprintf(" gpus=%d", len(c.GPUs))
	}
	return s
}

func addU(a, b uint64, what string) (uint64, error) {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return 0, fmt.Errorf("%w: %s %d + %d", ErrOverflow, what, a, b)
	}
	return s, nil
}

func subU(a, b uint64, what string, format func(uint64) string) (uint64, error) {
	if b > a {
		return 0, fmt.Errorf("%w: %s: need %s, have %s", ErrInsufficient, what, format(b), format(a))
	}
	return a - b, nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// takeGPUs removes from have one GPU for each requirement in want.
func takeGPUs(have, want []GPU) ([]GPU, error) {
	if len(want) == 0 {
		if len(have) == 0 {
			return nil, nil
		}
		return append([]GPU(nil), have...), nil
	}
	left := append([]GPU(nil), have...)
	for _, w := range want {
		found := -1
		for i, g := range left {
			if g.Satisfies(w) {
				found = i
				break
			}
		}
		if found < 0 {
			return nil, fmt.Errorf("%w: gpu: no free gpu satisfies %s", ErrInsufficient, describeGPU(w))
		}
		left = append(left[:found], left[found+1:]...)
	}
	if len(left) == 0 {
		return nil, nil
	}
	return left, nil
}

func describeGPU(g GPU) string {
	var parts []string
	if g.UUID != "" {
		parts = append(parts, "uuid "+g.UUID)
	}
	if g.Vendor != "" {
		parts = append(parts, g.Vendor)
	}
	if g.Model != "" {
		parts = append(parts, g.Model)
	}
	if g.Memory > 0 {
		parts = append(parts, FormatBytes(g.Memory))
	}
	if len(parts) == 0 {
		return "any gpu"
	}
	return strings.Join(parts, " ")
}
