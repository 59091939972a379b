package node

import (
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
)

func datastoreKey(s string) ds.Key { return ds.NewKey(s) }

// MemoryDatastore is a datastore for in-process nodes (the demo, tests,
// the bench) that keep nothing on disk.
func MemoryDatastore() ds.Batching { return dssync.MutexWrap(ds.NewMapDatastore()) }
