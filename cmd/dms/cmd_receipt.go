package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/urfave/cli/v2"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/orchestrator"
)

// receiptFormat names the document dms job receipt writes.
const receiptFormat = "dms-receipt/1"

// maxReceiptFile bounds what dms receipt verify reads: the envelope, in
// base64, beside its decoded view.
const maxReceiptFile = 1 << 20

// receiptFile is an exported receipt: the signed envelope, the only part
// that is verified, and a decoded view of it for people to read.
type receiptFile struct {
	Format   string                `json:"format"`
	Envelope []byte                `json:"envelope"`
	Signer   peer.ID               `json:"signer"`
	Receipt  *orchestrator.Receipt `json:"receipt"`
}

func (e *env) receiptCommand() *cli.Command {
	return e.commandGroup("receipt", "check a job's receipt offline: its signature, and the files it names",
		"A receipt is what a provider signs when a job's allocation ends: the job, its requester,\n"+
			"the bid and the job spec (by hash), the module or image, each input and output file's\n"+
			"sha256, the hashes of stdout and stderr, the exit code, times and resources. The\n"+
			"requesting node checks it on arrival and keeps it; dms job receipt exports it.",
		[]*cli.Command{e.receiptVerifyCommand()})
}

func (e *env) receiptVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check a receipt's signature and, for each file given, its hash",
		UsageText: "dms receipt verify [--outputs DIR] [--stdout FILE] [--stderr FILE] [--json] FILE",
		Description: "FILE is a receipt as dms job receipt writes it. Nothing but FILE and the files given\n" +
			"is used: no node, no network. It says whether the signature is valid and which peer\n" +
			"signed, then checks each file given against the receipt: every output file under\n" +
			"--outputs DIR (as dms job get or submit --output-dir wrote them; a file missing, changed\n" +
			"or not named in the receipt is a mismatch), stdout and stderr as saved to files. It names\n" +
			"each field that does not match and lists what it could not check. Exit status: 0 when\n" +
			"the signature is valid and every field checked matches, 1 otherwise.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "outputs", Usage: "check the output files under `DIR`"},
			&cli.StringFlag{Name: "stdout", Usage: "check the job's stdout, saved in `FILE`"},
			&cli.StringFlag{Name: "stderr", Usage: "check the job's stderr, saved in `FILE`"},
			&cli.BoolFlag{Name: "json", Usage: "print the outcome as JSON"},
		},
		Before: e.argsBefore(1, 1, "one receipt file (dms job receipt --out FILE writes one)"),
		Action: func(c *cli.Context) error {
			v, err := verifyReceiptFile(c.Args().First(), c.String("outputs"), c.String("stdout"), c.String("stderr"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if err := printJSON(e.stdout, v); err != nil {
					return err
				}
			} else {
				v.print(e.stdout)
			}
			if len(v.Mismatches) > 0 {
				return &exitError{code: exitFailure, msg: fmt.Sprintf("%s: %d %s", orchestrator.ErrReceipt, len(v.Mismatches), plural(len(v.Mismatches), "field differs", "fields differ"))}
			}
			return nil
		},
	}
}

// receiptCheck is the outcome of dms receipt verify.
type receiptCheck struct {
	Signer     peer.ID               `json:"signer"`
	Receipt    *orchestrator.Receipt `json:"receipt"`
	Matched    []string              `json:"matched"`
	Mismatches []string              `json:"mismatches"`
	Unchecked  []string              `json:"unchecked"`
}

func (v *receiptCheck) print(w io.Writer) {
	r := v.Receipt
	fmt.Fprintf(w, "signature: valid, signed by %s\n", v.Signer)
	fmt.Fprintf(w, "job %s, allocation %s, for requester %s\n", r.JobID, r.AllocationID, r.Requester)
	fmt.Fprintf(w, "%s, exit code %d, ended %s\n", r.State, r.ExitCode, r.Ended.UTC().Format("2006-01-02 15:04:05Z"))
	for _, m := range v.Matched {
		fmt.Fprintf(w, "ok        %s\n", m)
	}
	for _, m := range v.Mismatches {
		fmt.Fprintf(w, "MISMATCH  %s\n", m)
	}
	for _, m := range v.Unchecked {
		fmt.Fprintf(w, "unchecked %s\n", m)
	}
}

// readReceipt reads an exported receipt: the document dms job receipt
// writes, or the bare envelope. Only the envelope is trusted.
func readReceipt(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxReceiptFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxReceiptFile {
		return nil, fmt.Errorf("%s: over %d bytes, too large for a receipt", path, maxReceiptFile)
	}
	if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		// Only the envelope is read: the rest is a view for people, and
		// may have been edited.
		var doc struct {
			Format   string `json:"format"`
			Envelope []byte `json:"envelope"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, fmt.Errorf("%s: not a receipt document (%s): %v", path, receiptFormat, err)
		}
		if doc.Format != receiptFormat || len(doc.Envelope) == 0 {
			return nil, fmt.Errorf("%s: format %q with an envelope of %d bytes: want %s with the envelope", path, doc.Format, len(doc.Envelope), receiptFormat)
		}
		return doc.Envelope, nil
	}
	return data, nil
}

func verifyReceiptFile(path, outputs, stdout, stderr string) (*receiptCheck, error) {
	env, err := readReceipt(path)
	if err != nil {
		return nil, err
	}
	r, err := orchestrator.OpenReceipt(env)
	if err != nil {
		return nil, &exitError{code: exitFailure, msg: fmt.Sprintf("receipt %s does not verify: %v", path, err)}
	}
	v := &receiptCheck{Signer: r.Provider, Receipt: r, Matched: []string{}, Mismatches: []string{}, Unchecked: []string{}}
	stream := func(name, file, want string) error {
		if file == "" {
			v.Unchecked = append(v.Unchecked, fmt.Sprintf("%s (sha256 %s): give --%s FILE", name, want, name))
			return nil
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if got := orchestrator.StreamHash(data); got != want {
			v.Mismatches = append(v.Mismatches, fmt.Sprintf("%s: sha256 %s in the receipt, %s in %s", name, want, got, file))
		} else {
			v.Matched = append(v.Matched, fmt.Sprintf("%s sha256 %s", name, want))
		}
		return nil
	}
	if err := stream("stdout", stdout, r.StdoutSHA256); err != nil {
		return nil, err
	}
	if err := stream("stderr", stderr, r.StderrSHA256); err != nil {
		return nil, err
	}
	switch {
	case outputs == "" && (r.OutputsSHA256 != "" || len(r.Outputs) > 0):
		v.Unchecked = append(v.Unchecked, fmt.Sprintf("outputs (%d files, archive sha256 %s): give --outputs DIR", len(r.Outputs), r.OutputsSHA256))
	case outputs == "":
	case r.FilesOmitted:
		v.Unchecked = append(v.Unchecked, fmt.Sprintf("output files: the receipt lists none, only their archive's sha256 %s (too many to list)", r.OutputsSHA256))
	default:
		found, err := filesUnder(outputs)
		if err != nil {
			return nil, err
		}
		ms := orchestrator.CompareFiles("output", "on disk", r.Outputs, found)
		bad := map[string]bool{}
		for _, m := range ms {
			v.Mismatches = append(v.Mismatches, m.String())
			bad[m.Field] = true
		}
		for _, f := range r.Outputs {
			if !bad["output "+f.Path] {
				v.Matched = append(v.Matched, fmt.Sprintf("output %s sha256 %s", f.Path, f.SHA256))
			}
		}
	}
	if r.InputsSHA256 != "" {
		v.Unchecked = append(v.Unchecked, fmt.Sprintf("inputs (%d files, archive sha256 %s): their hashes are listed in the receipt", len(r.Inputs), r.InputsSHA256))
	}
	v.Unchecked = append(v.Unchecked, fmt.Sprintf("bid %s and job spec %s: only the requester holds what they hash (it checked them when the job ended)", short(r.BidSHA256), short(r.SpecSHA256)))
	return v, nil
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16] + "..."
	}
	return h
}

// filesUnder hashes every regular file under dir, by its slash-separated
// path relative to dir; anything else that is not a directory is refused.
func filesUnder(dir string) ([]archive.File, error) {
	var out []archive.File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file: outputs are regular files", p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, archive.File{Path: filepath.ToSlash(rel), Size: int64(len(data)), SHA256: archive.Sum(data)})
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("--outputs %s: no such directory", dir)
	}
	return out, err
}
