package resources

import (
	"fmt"
	"testing"
	"time"

	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	"github.com/dms-project/dms/capability"
)

// The ledger is on every bid's path (Reserve), every win's (Promote) and every
// allocation's end (Unlock). The map datastore isolates the ledger's own
// cost from the disk's.
func BenchmarkLedgerHoldPromoteUnlock(b *testing.B) {
	l, err := NewLedger(dssync.MutexWrap(datastore.NewMapDatastore()))
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Register(capability.Capability{CPU: capability.CPU{MilliCores: 64000}, Memory: 64 * capability.GiB, Disk: capability.TiB}); err != nil {
		b.Fatal(err)
	}
	need := capability.Capability{CPU: capability.CPU{MilliCores: 100}, Memory: 16 * capability.MiB}
	meta := []byte(`{"id":"x"}`)
	b.ReportAllocs()
	for i := range b.N {
		id := fmt.Sprintf("job-%d", i)
		if _, err := l.Reserve(id, need, time.Now().Add(time.Minute), nil); err != nil {
			b.Fatal(err)
		}
		if err := l.Promote(id, "alloc-"+id, meta); err != nil {
			b.Fatal(err)
		}
		if err := l.Unlock("alloc-" + id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLedgerHoldRelease(b *testing.B) {
	l, err := NewLedger(dssync.MutexWrap(datastore.NewMapDatastore()))
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Register(capability.Capability{CPU: capability.CPU{MilliCores: 64000}, Memory: 64 * capability.GiB}); err != nil {
		b.Fatal(err)
	}
	need := capability.Capability{CPU: capability.CPU{MilliCores: 100}}
	b.ReportAllocs()
	for i := range b.N {
		id := fmt.Sprintf("job-%d", i)
		if _, err := l.Reserve(id, need, time.Now().Add(time.Minute), nil); err != nil {
			b.Fatal(err)
		}
		l.Release(id)
	}
}
