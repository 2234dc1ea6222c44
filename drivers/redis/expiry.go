package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eko/gocache/lib/v4/store"
	redisstore "github.com/eko/gocache/store/redis/v4"
	goredis "github.com/redis/go-redis/v9"
)

// ExpiryIndexKey is the sorted set in which a Store records when each of
// its entries expires: member = the entry's key, score = its absolute
// expiry time in Unix milliseconds, by the clock of the server holding the
// index. Every Store on the same database (or cluster) shares it, so
// applications sharing a server with different key prefixes share it too;
// ListExpiring filters by prefix. Entries without a time to live are not
// in it.
const ExpiryIndexKey = "sessions-expiry-index"

// indexBatch is the most members one index script call receives (Lua's
// unpack has a stack limit); longer batches are split.
const indexBatch = 512

// luaNow is the Lua prologue of the index scripts: now, the server's clock
// in Unix milliseconds, and num, which formats a score without an
// exponent. Reading TIME before writing needs script effects replication
// (Redis 5 or newer, the only mode since Redis 7).
const luaNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function num(x) return string.format('%.0f', x) end
local function expireAtLast(idx)
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIREAT', idx, num(math.floor(tonumber(last[2])) + 1)) end
end
`

// indexAddScript records that the members expire ttl milliseconds from
// now, drops the members whose time is past, and makes the index itself
// expire just after its latest member, so that an idle index disappears
// with its last entry.
//
//	KEYS[1] the index
//	ARGV[1] time to live in milliseconds (> 0)
//	ARGV[2:] entry keys
var indexAddScript = goredis.NewScript(luaNow + `
local score = num(now + tonumber(ARGV[1]))
local args = {}
for i = 2, #ARGV do
  args[#args + 1] = score
  args[#args + 1] = ARGV[i]
end
redis.call('ZADD', KEYS[1], unpack(args))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. num(now))
expireAtLast(KEYS[1])
return 1
`)

// indexRangeScript drops the members whose time is past (on the first
// page only, offset 0) and returns a page of the members that expire from
// now to before, earliest first, as member, score, member, score...
//
//	KEYS[1] the index
//	ARGV[1] before, Unix milliseconds (exclusive)
//	ARGV[2] offset
//	ARGV[3] count
var indexRangeScript = goredis.NewScript(luaNow + `
if ARGV[2] == '0' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. num(now))
end
return redis.call('ZRANGEBYSCORE', KEYS[1], num(now), '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', ARGV[2], ARGV[3])
`)

// indexRepairScript corrects members ListExpiring found wrong, each only
// if its score is still the one ListExpiring read (so that a concurrent
// write's record is never lost): a member whose entry is gone or has no
// time to live is removed; one whose entry lives longer gets the entry's
// real expiry time.
//
//	KEYS[1] the index
//	ARGV triples: entry key, score read, the entry's PTTL (< 0: remove)
var indexRepairScript = goredis.NewScript(luaNow + `
for i = 1, #ARGV, 3 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) == tonumber(ARGV[i + 1]) then
    local pttl = tonumber(ARGV[i + 2])
    if pttl < 0 then
      redis.call('ZREM', KEYS[1], ARGV[i])
    else
      redis.call('ZADD', KEYS[1], num(now + pttl), ARGV[i])
    end
  end
end
expireAtLast(KEYS[1])
return 1
`)

// indexRemoveScript removes a member only if its score is not later than
// ARGV[2] milliseconds from now: the record of an entry just deleted, but
// not that of an entry written again since with a longer time to live.
//
//	KEYS[1] the index
//	ARGV[1] entry key
//	ARGV[2] latest score removed, in milliseconds from now
var indexRemoveScript = goredis.NewScript(luaNow + `
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= now + tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
`)

// compareAndDeleteScript deletes KEYS[1] if it holds ARGV[1]. It returns
// -3 when it did not delete, else the entry's PTTL before the delete (-1:
// no time to live).
var compareAndDeleteScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -3 end
local pttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
return pttl
`)

// removeSlack is how much later than a deleted entry's own expiry its
// index record may be and still be removed by CompareAndDelete: a record
// is written just after its entry (a round trip later for
// CompareAndSwap), possibly by a server whose clock is a little ahead.
const removeSlack = time.Second

// millis is a time to live in whole milliseconds, rounded up.
func millis(ttl time.Duration) int64 { return int64((ttl + time.Millisecond - 1) / time.Millisecond) }

// indexAdd records that keys expire ttl from now (ttl > 0).
func (s *Store) indexAdd(ctx context.Context, ttl time.Duration, keys []string) error {
	if s.noExpiryIndex || len(keys) == 0 {
		return nil
	}
	for len(keys) > 0 {
		n := min(len(keys), indexBatch)
		if err := indexAddScript.Run(ctx, s.client, []string{s.indexKey}, indexAddArgs(ttl, keys[:n])...).Err(); err != nil {
			return fmt.Errorf("expiry index: %w", err)
		}
		keys = keys[n:]
	}
	return nil
}

func indexAddArgs(ttl time.Duration, keys []string) []any {
	args := make([]any, 0, len(keys)+1)
	args = append(args, millis(ttl))
	for _, k := range keys {
		args = append(args, k)
	}
	return args
}

// indexRemove drops the records of keys, entries that no longer expire.
func (s *Store) indexRemove(ctx context.Context, keys []string) error {
	if s.noExpiryIndex || len(keys) == 0 {
		return nil
	}
	members := make([]any, len(keys))
	for i, k := range keys {
		members[i] = k
	}
	if err := s.client.ZRem(ctx, s.indexKey, members...).Err(); err != nil {
		return fmt.Errorf("expiry index: %w", err)
	}
	return nil
}

// indexUpdate records the outcome of writing keys with ttl: their expiry
// time, or none (ttl 0).
func (s *Store) indexUpdate(ctx context.Context, ttl time.Duration, keys []string) error {
	if ttl > 0 {
		return s.indexAdd(ctx, ttl, keys)
	}
	return s.indexRemove(ctx, keys)
}

// queueIndexUpdate is indexUpdate queued on a pipeline of at most
// indexBatch keys. The command it returns may fail with NOSCRIPT; then
// the caller runs indexUpdate.
func (s *Store) queueIndexUpdate(ctx context.Context, p goredis.Pipeliner, ttl time.Duration, keys []string) goredis.Cmder {
	if ttl > 0 {
		return indexAddScript.EvalSha(ctx, p, []string{s.indexKey}, indexAddArgs(ttl, keys)...)
	}
	members := make([]any, len(keys))
	for i, k := range keys {
		members[i] = k
	}
	return p.ZRem(ctx, s.indexKey, members...)
}

// pipelined runs fn's commands in one pipeline. When ctx ended
// meanwhile, its error wraps ctx's: go-redis reports a pipeline's socket
// deadline as a net timeout, not as the context's.
func (s *Store) pipelined(ctx context.Context, fn func(goredis.Pipeliner) error) ([]goredis.Cmder, error) {
	cmds, err := s.client.Pipelined(ctx, fn)
	if err != nil && err != goredis.Nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return cmds, err
}

// redisTTL is what go-redis's SET sends for an expiration: 0 and negative
// values other than KeepTTL mean none; a positive one is truncated to
// whole milliseconds, at least 1.
func redisTTL(d time.Duration) time.Duration {
	if d > 0 && d < time.Millisecond {
		return time.Millisecond
	}
	return d.Truncate(time.Millisecond)
}

// Set is gocache's redis Set (SET with the store.Option expiration, none
// by default; KeepTTL keeps the key's; tags as gocache records them) plus
// the expiry index update, sent in the same pipeline: one round trip (on
// a Cluster client, one per node, in parallel). key must be a string.
func (s *Store) Set(ctx context.Context, key any, value any, options ...store.Option) error {
	k := key.(string)
	opts := store.ApplyOptions(options...)
	var index goredis.Cmder // nil: the index is left alone
	cmds, err := s.pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Set(ctx, k, value, opts.Expiration)
		if !s.noExpiryIndex && opts.Expiration != goredis.KeepTTL {
			index = s.queueIndexUpdate(ctx, p, max(redisTTL(opts.Expiration), 0), []string{k})
		}
		return nil
	})
	if err != nil && index != nil && cmds[0].Err() == nil && goredis.HasErrorPrefix(index.Err(), "NOSCRIPT") {
		err = s.indexUpdate(ctx, max(redisTTL(opts.Expiration), 0), []string{k})
	}
	if err != nil {
		return err
	}
	if tags := opts.Tags; len(tags) > 0 { // as gocache does, errors ignored
		tagsTTL := opts.TagsTTL
		if tagsTTL == 0 {
			tagsTTL = 720 * time.Hour
		}
		for _, tag := range tags {
			tagKey := fmt.Sprintf(redisstore.RedisTagPattern, tag)
			s.client.SAdd(ctx, tagKey, k)
			s.client.Expire(ctx, tagKey, tagsTTL)
		}
	}
	return nil
}

// Delete deletes key (gocache's DEL) and its expiry index record, in one
// pipeline. key must be a string.
func (s *Store) Delete(ctx context.Context, key any) error {
	k := key.(string)
	if s.noExpiryIndex {
		return s.client.Del(ctx, k).Err()
	}
	_, err := s.pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Del(ctx, k)
		p.ZRem(ctx, s.indexKey, k)
		return nil
	})
	return err
}

// CompareAndDelete deletes key only if its value is byte for byte equal to
// old (an expired key is absent; nil old is the empty value), atomically (a Lua script on the one
// key, so it works on a Cluster too), and reports whether it deleted; a
// missing key is (false, nil). Of any number of concurrent calls with the
// same key and old, at most one reports true. After a delete it removes
// the key's expiry index record, in a second round trip, unless the key
// was written again meanwhile with a later expiry. On error the outcome
// is unknown.
func (s *Store) CompareAndDelete(ctx context.Context, key string, old []byte) (bool, error) {
	pttl, err := compareAndDeleteScript.Run(ctx, s.client, []string{key}, old).Int64()
	if err != nil {
		return false, fmt.Errorf("redis: CompareAndDelete %s: %w", key, err)
	}
	if pttl == -3 {
		return false, nil
	}
	if !s.noExpiryIndex {
		latest := millis(removeSlack)
		if pttl > 0 {
			latest += pttl
		}
		if err := indexRemoveScript.Run(ctx, s.client, []string{s.indexKey}, key, latest).Err(); err != nil {
			return true, fmt.Errorf("redis: CompareAndDelete %s deleted, but its expiry index record stays: %w", key, err)
		}
	}
	return true, nil
}

// ListExpiring returns up to limit live entries whose key starts with
// prefix and whose time to live ends before the instant before, earliest
// first, with their values. It reads the expiry index a page at a time
// (members of other prefixes are skipped), then each candidate's value
// and PTTL in one pipeline (on a Cluster client, one round trip per
// node), so that it never reports an entry that in fact lives past
// before (a write racing with another's index update). Index records of
// entries gone or without expiry are removed, and those of entries that
// live longer are moved to their real expiry time, each only if its score
// is still the one read.
func (s *Store) ListExpiring(ctx context.Context, prefix string, before time.Time, limit int) ([]string, [][]byte, error) {
	if limit <= 0 || s.noExpiryIndex {
		return nil, nil, nil
	}
	page := max(limit, 100)
	var (
		keys   []string
		values [][]byte
		repair []any // triples for indexRepairScript
		seen   = map[string]bool{}
	)
	for offset := 0; len(keys) < limit; offset += page {
		reply, err := indexRangeScript.Run(ctx, s.client, []string{s.indexKey}, before.UnixMilli(), offset, page).Slice()
		if err != nil {
			return nil, nil, fmt.Errorf("redis: ListExpiring %q: %w", prefix, err)
		}
		var cands []string
		var scores []string
		for i := 0; i+1 < len(reply); i += 2 {
			m, _ := reply[i].(string)
			if !strings.HasPrefix(m, prefix) || seen[m] {
				continue
			}
			seen[m] = true
			cands = append(cands, m)
			scores = append(scores, fmt.Sprint(reply[i+1]))
		}
		if len(cands) > 0 {
			gets := make([]*goredis.StringCmd, len(cands))
			pttls := make([]*goredis.DurationCmd, len(cands))
			_, err := s.pipelined(ctx, func(p goredis.Pipeliner) error {
				for i, k := range cands {
					gets[i] = p.Get(ctx, k)
					pttls[i] = p.PTTL(ctx, k)
				}
				return nil
			})
			if err != nil && err != goredis.Nil {
				return nil, nil, fmt.Errorf("redis: ListExpiring %q: %w", prefix, err)
			}
			now := time.Now()
			for i, k := range cands {
				v, err := gets[i].Bytes()
				pttl, pttlErr := pttls[i].Result()
				if err == nil {
					err = pttlErr
				}
				switch {
				case err == goredis.Nil || pttl < 0: // gone, or no expiry
					repair = append(repair, k, scores[i], -1)
				case err != nil:
					return nil, nil, fmt.Errorf("redis: ListExpiring %q: %s: %w", prefix, k, err)
				case !now.Add(pttl).Before(before): // written again, to live longer
					repair = append(repair, k, scores[i], pttl.Milliseconds())
				case len(keys) < limit:
					keys = append(keys, k)
					values = append(values, v)
				}
			}
		}
		if len(reply)/2 < page {
			break
		}
	}
	for len(repair) > 0 {
		n := min(len(repair), 3*indexBatch)
		if err := indexRepairScript.Run(ctx, s.client, []string{s.indexKey}, repair[:n]...).Err(); err != nil {
			return nil, nil, fmt.Errorf("redis: ListExpiring %q: repairing the expiry index: %w", prefix, err)
		}
		repair = repair[n:]
	}
	return keys, values, nil
}
