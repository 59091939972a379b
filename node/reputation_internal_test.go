package node

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/orchestrator"
)

// A stored record that cannot be read is skipped, not fatal, and says why;
// the readable ones load.
func TestProviderRecordsThatCannotBeReadAreSkipped(t *testing.T) {
	ctx := context.Background()
	store := MemoryDatastore()
	id, err := peer.Decode("12D3KooWBhdZuAdEQE56BbqhCzeysjmwbcYoK4kpVMDxxzKxSuRY")
	if err != nil {
		t.Fatal(err)
	}
	good := orchestrator.ProviderRecord{Provider: id,
		Events: []orchestrator.OutcomeEvent{{Time: time.Now(), Outcome: orchestrator.OutcomeStalled}}}
	if err := providerRecordSaver(store)(good); err != nil {
		t.Fatal(err)
	}
	for key, value := range map[string]string{
		"not-json":  "{",
		"bad-peer":  `{"provider":"nobody","events":[]}`,
		"bad-event": `{"provider":"12D3KooWJMnKsfDJbTuiwHsq7kYvohxWTVuaT4wBWX9MLeicc4tF","events":[{"outcome":"vanished"}]}`,
		"oversized": `{"provider":"` + strings.Repeat("x", maxProviderRecord) + `"}`,
	} {
		if err := store.Put(ctx, providersPrefix.ChildString(key), []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	var logged strings.Builder
	recs, err := loadProviderRecords(ctx, store, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Provider != good.Provider {
		t.Errorf("loaded %+v, want only the readable record", recs)
	}
	for _, want := range []string{"not-json", "bad-peer", `outcome \"vanished\"`, "at most 65536"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log does not say %s:\n%s", want, logged.String())
		}
	}
	// A record with no events is one to delete.
	if err := providerRecordSaver(store)(orchestrator.ProviderRecord{Provider: good.Provider}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := loadProviderRecords(ctx, store, slog.New(slog.DiscardHandler)); len(recs) != 0 {
		t.Errorf("after deleting, loaded %+v", recs)
	}
}
