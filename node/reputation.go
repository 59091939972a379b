package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"

	"github.com/dms-project/dms/orchestrator"
)

// ProvidersPrefix is where the requester's record of each provider is kept
// in the datastore, one key per provider: what it saw a provider do must
// outlive a restart, or a provider that stalled is trusted again by the
// next process.
const ProvidersPrefix = "/providers"

var providersPrefix = ds.NewKey(ProvidersPrefix)

// maxProviderRecord bounds a stored record: 64 events of about 120 bytes
// each, with room to spare.
const maxProviderRecord = 64 << 10

// loadProviderRecords reads the records kept. A record that cannot be read
// is skipped with a warning rather than keeping the node from starting: it
// only makes the requester forget one provider.
func loadProviderRecords(ctx context.Context, store ds.Datastore, log *slog.Logger) ([]orchestrator.ProviderRecord, error) {
	res, err := store.Query(ctx, query.Query{Prefix: providersPrefix.String()})
	if err != nil {
		return nil, fmt.Errorf("load provider records: %w", err)
	}
	defer res.Close()
	var out []orchestrator.ProviderRecord
	for e := range res.Next() {
		if e.Error != nil {
			return nil, fmt.Errorf("load provider records: %w", e.Error)
		}
		rec, err := decodeProviderRecord(e.Value)
		if err != nil {
			log.Warn("provider record skipped", "key", e.Key, "err", err)
			continue
		}
		out = append(out, rec)
	}
	return out, nil
}

// decodeProviderRecord decodes and checks one stored record.
func decodeProviderRecord(b []byte) (orchestrator.ProviderRecord, error) {
	var rec orchestrator.ProviderRecord
	if len(b) > maxProviderRecord {
		return rec, fmt.Errorf("provider record of %d bytes: at most %d", len(b), maxProviderRecord)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("provider record: %w", err)
	}
	return rec, rec.Check()
}

// providerRecordSaver keeps each record that changes; one with no events
// is deleted.
func providerRecordSaver(store ds.Datastore) func(orchestrator.ProviderRecord) error {
	return func(rec orchestrator.ProviderRecord) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		key := providersPrefix.ChildString(rec.Provider.String())
		if len(rec.Events) == 0 {
			return store.Delete(ctx, key)
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return store.Put(ctx, key, b)
	}
}

// Providers is what this node, as a requester, has seen each provider do,
// and whether it avoids one now.
func (n *Node) Providers() []orchestrator.ProviderStanding {
	return n.orch.Reputation().Standings()
}
