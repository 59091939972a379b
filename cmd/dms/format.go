package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/home"
	"github.com/libp2p/go-libp2p/core/peer"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// capTable prints rows of capabilities as an aligned table. A row whose GPU
// count does not apply shows "-".
type capRow struct {
	name  string
	c     capability.Capability
	noGPU bool
	note  string
}

func printCapTable(w io.Writer, rows []capRow) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "\tCPU\tMEMORY\tDISK\tGPUS\t")
	for _, r := range rows {
		gpus := strconv.Itoa(len(r.c.GPUs))
		if r.noGPU {
			gpus = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.name, capability.FormatCPU(r.c.CPU.MilliCores),
			capability.FormatBytes(r.c.Memory), capability.FormatBytes(r.c.Disk), gpus, r.note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return writeTrimmed(w, buf.Bytes())
}

// writeTrimmed writes text without the trailing blanks tabwriter leaves.
func writeTrimmed(w io.Writer, text []byte) error {
	for _, line := range strings.SplitAfter(string(text), "\n") {
		if line == "" {
			continue
		}
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// shortPeer shows a peer ID by its last 8 characters: every Ed25519 peer
// ID starts with the same 12D3KooW, so the end is what tells them apart.
func shortPeer(p peer.ID) string { return shortPeerText(p.String()) }

// shortPeerText is shortPeer of a peer ID as text.
func shortPeerText(s string) string {
	if len(s) <= 8 {
		return s
	}
	return s[len(s)-8:]
}

// shortJobID is the part of a job ID a table shows; any unique prefix of
// 4 characters or more names the job.
func shortJobID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// describeNeeds prints a job's requirements as a user wrote them.
func describeNeeds(c capability.Capability) string {
	cores := "cores"
	if c.CPU.MilliCores == 1000 {
		cores = "core"
	}
	s := fmt.Sprintf("%s %s, %s memory", capability.FormatCPU(c.CPU.MilliCores), cores, capability.FormatBytes(c.Memory))
	if c.Disk > 0 {
		s += ", " + capability.FormatBytes(c.Disk) + " disk"
	}
	return s
}

// formatPrice prints a price with its currency; prices of short jobs are
// small, so up to six decimals show.
func formatPrice(v float64, currency string) string {
	if currency == "" {
		currency = capability.DefaultCurrency
	}
	s := strconv.FormatFloat(v, 'f', 6, 64)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "0" && v > 0 {
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	return s + " " + currency
}

// formatScore prints a benchmark score; 0 means the provider has not run
// a benchmark.
func formatScore(s float64) string {
	if s == 0 {
		return "none"
	}
	return strconv.FormatFloat(s, 'f', 1, 64)
}

// formatElapsed prints a duration to the precision a person reads:
// milliseconds under a second, then hundredths, then whole seconds.
func formatElapsed(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// formatWhen prints a time of today as 15:04:05, an older one with its date.
func formatWhen(t time.Time) string {
	t = t.Local()
	if y, m, d := t.Date(); time.Now().Year() == y && time.Now().Month() == m && time.Now().Day() == d {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04")
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = home.ShellQuote(a)
	}
	return out
}

// plural picks the word for n of something.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
