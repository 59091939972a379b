package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/archive"
	"github.com/dms-project/dms/capability"
	"github.com/dms-project/dms/executor"
	"github.com/dms-project/dms/orchestrator"
)

// An allocation's files live in WorkDir/<allocation>: in/ holds the inputs
// at their guest paths (in/inputs/data.csv is /inputs/data.csv in the job),
// out/ is the job's /outputs. Both go when the allocation ends; what the
// job wrote is packed first and shared with its requester for a while.

// workFor is the allocation's staging, collection and cleanup.
func (n *Node) workFor(id string, ex executor.Executor, inv *orchestrator.Invocation) work {
	dir := filepath.Join(n.cfg.WorkDir, id)
	requester := inv.Bid.Requester
	job := inv.Job
	outDir := filepath.Join(dir, "out")
	// The files' hashes, for the receipt: written by stage and collect,
	// read by seal, all on the allocation's run goroutine.
	var inputs, outputs []archive.File
	return work{
		stage: func(ctx context.Context) (executor.Executor, executor.Spec, error) {
			spec, files, err := n.stage(ctx, dir, requester, &job)
			inputs = files
			return ex, spec, err
		},
		collect: func(res *orchestrator.Result) { outputs = n.collect(outDir, requester, res) },
		receipt: orchestrator.NewReceipt(inv, n.ID()),
		seal: func(r *orchestrator.Receipt) []byte {
			r.Inputs, r.Outputs = inputs, outputs
			env, err := orchestrator.SealReceipt(r, n.cfg.Key)
			if err != nil {
				// The requester fails the job for want of a receipt: say
				// why here, where it can be fixed.
				n.log.Error("receipt not sealed", "allocation", id, "job", job.ID, "err", err)
			}
			return env
		},
		cleanup: func() {
			if err := os.RemoveAll(dir); err != nil {
				n.log.Warn("remove allocation files", "allocation", id, "err", err)
			}
		},
	}
}

// stage fetches what the job names (a large module, the inputs), lays out
// its files and returns the spec it runs with and the input files.
func (n *Node) stage(ctx context.Context, dir string, requester peer.ID, job *orchestrator.JobSpec) (executor.Spec, []archive.File, error) {
	var inputs []archive.File
	spec, err := n.stageFiles(ctx, dir, requester, job, &inputs)
	return spec, inputs, err
}

func (n *Node) stageFiles(ctx context.Context, dir string, requester peer.ID, job *orchestrator.JobSpec, inputs *[]archive.File) (executor.Spec, error) {
	spec := executor.Spec{
		Kind: executor.Kind(job.Executor), Module: job.Module, Image: job.Image, Entrypoint: job.Entrypoint,
		Command: job.Command, Args: job.Args, Env: job.Env, Stdin: job.Stdin,
		MemoryBytes: job.Requirements.Memory, Timeout: job.Duration.Std(),
		MaxOutput: orchestrator.MaxResultOutput,
	}
	if d := job.Deterministic; d != nil {
		spec.Deterministic = &executor.Determinism{Seed: d.Seed, Clock: d.Clock}
	}
	if spec.Kind == executor.KindDocker {
		spec.CPUMilli = job.Requirements.CPU.MilliCores
		spec.GPUs = n.lockedGPUs(job.ID)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return spec, err
	}
	if b := job.ModuleBlob; b != nil {
		m, err := n.fetch(ctx, requester, *b, orchestrator.MaxModuleSize, orchestrator.BlobModule)
		if err != nil {
			return spec, fmt.Errorf("module: %w", err)
		}
		spec.Module = m
	}
	if b := job.Inputs; b != nil {
		data, err := n.fetch(ctx, requester, *b, orchestrator.MaxInputSize, orchestrator.BlobInputs)
		if err != nil {
			return spec, fmt.Errorf("inputs: %w", err)
		}
		in := filepath.Join(dir, "in")
		files, err := archive.Unpack(data, in, orchestrator.MaxInputSize)
		if err != nil {
			return spec, fmt.Errorf("inputs: %w", err)
		}
		*inputs = files
		if spec.Mounts, err = inputMounts(in); err != nil {
			return spec, err
		}
		if spec.Kind == executor.KindNative {
			// No sandbox to mount into: the job finds /inputs/x at
			// $DMS_INPUTS/inputs/x.
			env := make(map[string]string, len(spec.Env)+1)
			for k, v := range spec.Env {
				env[k] = v
			}
			env["DMS_INPUTS"] = in
			spec.Env, spec.Mounts = env, nil
		}
	}
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return spec, err
	}
	if spec.Kind == executor.KindDocker && os.Getuid() == 0 {
		// The container runs as nobody; the directory above keeps others out.
		if err := os.Chmod(out, 0o777); err != nil {
			return spec, err
		}
	}
	spec.OutputDir = out
	return spec, spec.Validate()
}

// fetch returns the content b names: from the cache when this node kept it
// from an earlier job (and may use it for this requester, see cache.go),
// else from the requester, keeping it for the next.
func (n *Node) fetch(ctx context.Context, requester peer.ID, b orchestrator.Blob, limit int64, kind orchestrator.BlobKind) ([]byte, error) {
	if data, ok := n.blobs.get(requester, b.SHA256, kind); ok && int64(len(data)) == b.Size {
		n.metrics.blobFromCache(kind, len(data))
		return data, nil
	}
	data, err := n.orch.Fetch(ctx, requester, b, limit)
	if err != nil {
		return nil, err
	}
	n.metrics.blobFetched(kind, len(data))
	if err := n.blobs.put(requester, b.SHA256, data, kind); err != nil {
		// The job runs all the same; the next one fetches again.
		n.log.Warn("not cached", "kind", kind, "sha256", b.SHA256, "err", err)
	}
	return data, nil
}

// inputMounts maps each top-level directory of the inputs to its guest
// path, read-only.
func inputMounts(in string) (map[string]string, error) {
	ents, err := os.ReadDir(in)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, e := range ents {
		if !e.IsDir() {
			return nil, fmt.Errorf("input /%s: inputs go inside a directory (such as /inputs/%s), not at the root", e.Name(), e.Name())
		}
		if "/"+e.Name() == executor.OutputsPath {
			return nil, fmt.Errorf("input /%s: %s holds the job's outputs", e.Name(), executor.OutputsPath)
		}
		m["/"+e.Name()] = filepath.Join(in, e.Name())
	}
	return m, nil
}

// collect packs what the job left in /outputs into res and shares it with
// the requester, and returns the files. A job that left more than
// MaxOutputSize fails, naming the limit.
func (n *Node) collect(out string, requester peer.ID, res *orchestrator.Result) []archive.File {
	if _, err := os.Stat(out); err != nil {
		return nil // the job never got as far as its files
	}
	limit := n.cfg.MaxOutputBytes
	if limit == 0 {
		limit = orchestrator.MaxOutputSize
	}
	data, files, err := archive.PackDir(out, limit)
	switch {
	case errors.Is(err, archive.ErrTooLarge):
		res.State = orchestrator.StateFailed
		res.Reason = fmt.Sprintf("the job left more in %s than the limit of %s", executor.OutputsPath, capability.FormatBytes(uint64(limit)))
		return nil
	case err != nil:
		res.State = orchestrator.StateFailed
		res.Reason = fmt.Sprintf("collecting %s: %v", executor.OutputsPath, err)
		return nil
	case len(files) == 0:
		return nil
	}
	// Kept as long as the result is: a requester that was away when the
	// job ended fetches them when it follows the allocation again.
	b := n.orch.Share(data, requester, n.cfg.KeepResults)
	res.Outputs = &orchestrator.Outputs{Archive: b, Files: len(files)}
	return files
}

// lockedGPUs are the device UUIDs the job's lock names.
func (n *Node) lockedGPUs(jobID string) []string {
	var out []string
	for _, lk := range n.ledger.Locks() {
		var info AllocationInfo
		if err := json.Unmarshal(lk.Meta, &info); err != nil || info.JobID != jobID {
			continue
		}
		for _, g := range lk.Capability.GPUs {
			if g.UUID != "" {
				out = append(out, g.UUID)
			}
		}
	}
	return out
}
