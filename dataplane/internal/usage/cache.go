package usage

import (
	"hash/maphash"
	"sync"
)

// Counting is the expensive part of estimating a prompt (the tokenizer manages 5 to
// 12 MB/s), and much of a prompt repeats from request to request: the system prompt,
// and in a conversation every earlier message, which the client sends again with
// each turn. EstimatePrompt therefore remembers the counts of recent texts.
const (
	// cacheMinBytes: shorter texts are counted again. Even a role name costs the
	// tokenizer microseconds (its split pattern is a backtracking regexp), so
	// every text is worth remembering.
	cacheMinBytes = 1
	// cacheShards and cacheShardEntries bound the cache: at most
	// 2 × cacheShards × cacheShardEntries counts, a few MiB.
	cacheShards       = 16
	cacheShardEntries = 4096
)

// countCache maps a text's hash to its token count. It keeps two generations per
// shard: when the current one fills up it becomes the previous one, and a hit in
// the previous one is copied forward, so recently used counts survive. A 64-bit
// hash collision would give another text's count; at these sizes that is far rarer
// than the tokenizer's own disagreements with the provider, and the reservation is
// settled to the reported usage anyway. Safe for concurrent use.
type countCache struct {
	seed   maphash.Seed
	shards [cacheShards]countShard
}

type countShard struct {
	mu        sync.Mutex // guards cur and prev
	cur, prev map[uint64]int64
}

var counts = newCountCache()

func newCountCache() *countCache {
	c := &countCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].cur = make(map[uint64]int64)
	}
	return c
}

// count returns the token count of s, from the cache or from CountText.
func (c *countCache) count(s string) int64 {
	if len(s) < cacheMinBytes {
		return CountText(s)
	}
	h := maphash.String(c.seed, s)
	sh := &c.shards[h%cacheShards]
	sh.mu.Lock()
	n, ok := sh.cur[h]
	if !ok {
		if n, ok = sh.prev[h]; ok {
			sh.put(h, n)
		}
	}
	sh.mu.Unlock()
	if ok {
		return n
	}
	n = CountText(s)
	sh.mu.Lock()
	sh.put(h, n)
	sh.mu.Unlock()
	return n
}

// put stores a count, starting a new generation when the current one is full.
// sh.mu is held.
func (sh *countShard) put(h uint64, n int64) {
	if len(sh.cur) >= cacheShardEntries {
		sh.prev, sh.cur = sh.cur, make(map[uint64]int64, cacheShardEntries)
	}
	sh.cur[h] = n
}
