package node

import (
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/dms-project/dms/cache"
	"github.com/dms-project/dms/orchestrator"
)

// A provider keeps what it fetched (package cache). A module is code that
// anyone may send: it is used, and claimed in bids, for any requester's
// job. Inputs are a requester's data: a provider that used or claimed them
// for another requester would tell anyone who guessed their bytes that
// somebody ran a job on them here, by its bid or by not fetching them. So
// inputs are used and claimed only for a requester this node fetched them
// from (fetching them proves the requester has them). That record is kept
// in memory: after a restart, each requester's inputs are fetched once
// more; modules are not.

// maxInputOwners bounds the requesters recorded per inputs: past it, a
// further requester fetches them each time (a job's inputs are seldom
// shared by so many).
const maxInputOwners = 16

// blobCache is the node's cache with the record of whose inputs are whose.
type blobCache struct {
	store *cache.Store

	mu     sync.Mutex
	owners map[string][]peer.ID // inputs' sha256 → the requesters they came from
}

func newBlobCache(store *cache.Store) *blobCache {
	return &blobCache{store: store, owners: map[string][]peer.ID{}}
}

// usable reports whether the cache holds hash for requester's job.
func (c *blobCache) usable(requester peer.ID, hash string, kind orchestrator.BlobKind) bool {
	if kind == orchestrator.BlobInputs && !c.ownedBy(hash, requester) {
		return false
	}
	return c.store.Has(hash)
}

// get returns the content for requester's job, if usable.
func (c *blobCache) get(requester peer.ID, hash string, kind orchestrator.BlobKind) ([]byte, bool) {
	if kind == orchestrator.BlobInputs && !c.ownedBy(hash, requester) {
		return nil, false
	}
	return c.store.Get(hash)
}

// put keeps content fetched from requester.
func (c *blobCache) put(requester peer.ID, hash string, data []byte, kind orchestrator.BlobKind) error {
	if err := c.store.Put(hash, data); err != nil {
		return err
	}
	if kind == orchestrator.BlobInputs {
		c.own(hash, requester)
	}
	return nil
}

func (c *blobCache) ownedBy(hash string, p peer.ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.owners[hash], p)
}

func (c *blobCache) own(hash string, p peer.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.owners) > 2*c.store.Len()+64 {
		// Drop the records of inputs the cache has since evicted.
		for h := range c.owners {
			if !c.store.Has(h) {
				delete(c.owners, h)
			}
		}
	}
	if o := c.owners[hash]; !slices.Contains(o, p) && len(o) < maxInputOwners {
		c.owners[hash] = append(o, p)
	}
}
