// Package resources knows the machine a node runs on and what it has promised
// of it.
//
// It measures the machine (Measure, DetectGPUs), scores it (BenchmarkCapability),
// watches what its owner uses (Monitor), and keeps the ledger of what is
// registered, held for a bid and locked for an allocation (Ledger). The ledger
// is persisted through go-datastore (OpenDatastore opens the on-disk one) so
// that a lock survives a crash exactly when its allocation record does.
package resources
