package redis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// DefaultClusterStateReloadInterval is how old the slot layout of a
// Cluster client made by Open may get before a command reloads it (CLUSTER
// SLOTS, in the background) when the URL does not set
// cluster_state_reload_interval. go-redis's own default is 60 s: a master
// that dies answers "connection refused", never MOVED, so until the next
// reload the client keeps sending its slots' commands to the dead address,
// long after a replica took over.
const DefaultClusterStateReloadInterval = time.Second

// How nodeHealth probes a node it found refusing connections: first after
// probeMin, then less and less often, up to probeMax; a node nobody asked
// for during forgetAfter is forgotten (the next command dials it again).
const (
	probeMin     = 25 * time.Millisecond
	probeMax     = time.Second
	probeTimeout = 250 * time.Millisecond
	forgetAfter  = 10 * time.Second
	// retryFor is how long after a node last refused a connection the
	// commands failed for it may be retried by go-redis (max_redirects),
	// which picks the node from the slot layout again: the reload the
	// refusal started may show that the slot moved (a client idle through
	// a failover, whose first command dialed the dead master with
	// go-redis's dial retries). After that, retrying would only find it
	// dead again.
	retryFor = 500 * time.Millisecond
)

// nodeHealth keeps a Cluster client made by Open going through a failover:
// it reloads the slot layout as soon as a node fails (a refused or broken
// connection, CLUSTERDOWN, TRYAGAIN, MASTERDOWN, LOADING, READONLY), and
// it fails commands for a node that refuses connections at once
// (ErrNodeUnreachable) instead of letting each of them dial it again with
// go-redis's retries and back-offs, until a probe connects again. Batch
// calls check first that none of their keys lives on such a node, so that
// they fail before anything is sent and the caller can write the entries
// of the healthy nodes one by one.
type nodeHealth struct {
	cc *goredis.ClusterClient

	mu     sync.Mutex
	down   map[string]*downNode // by address, "host:port"
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

type downNode struct {
	since, refused, used time.Time // first and last refusal; last command failed for it
	err                  error     // the dial error
}

// ErrNodeUnreachable is matched (errors.Is) by the error of a command that
// a Cluster client made by Open did not send, because the node that serves
// its key refused connections and has not accepted one since. Except in
// the first half second after a refusal (when the slot layout being
// reloaded may send the command elsewhere), go-redis does not retry it: a
// write to a dead master fails at once, so that a batch spanning a dead
// node fails fast and the sessions library writes the other entries one
// by one. The message quotes the dial error.
var ErrNodeUnreachable = errors.New("redis: cluster node unreachable")

type nodeDownError struct {
	addr  string
	since time.Time
	err   error
	retry bool // go-redis may retry it (see retryFor)
}

func (e *nodeDownError) Error() string {
	return fmt.Sprintf("redis: cluster node %s unreachable for %v (%v); not tried again until it accepts connections",
		e.addr, time.Since(e.since).Round(time.Millisecond), e.err)
}

// Unwrap returns the dial error only when go-redis may retry the command:
// it retries dial errors.
func (e *nodeDownError) Unwrap() []error {
	if e.retry {
		return []error{ErrNodeUnreachable, e.err}
	}
	return []error{ErrNodeUnreachable}
}

func newNodeHealth(cc *goredis.ClusterClient) *nodeHealth {
	h := &nodeHealth{cc: cc, down: map[string]*downNode{}, stop: make(chan struct{})}
	cc.OnNewNode(func(c *goredis.Client) { c.AddHook(nodeHook{h: h, addr: c.Options().Addr}) })
	return h
}

// close stops the probes.
func (h *nodeHealth) close() {
	if h == nil {
		return
	}
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.stop)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// reload asks go-redis for a new slot layout (in the background; requests
// coalesce, at most one every 200 ms).
func (h *nodeHealth) reload() { h.cc.ReloadState(context.Background()) }

// failFast returns the error for a command to addr if addr refuses
// connections, else nil.
func (h *nodeHealth) failFast(addr string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.down[addr]
	if d == nil {
		return nil
	}
	d.used = time.Now()
	return &nodeDownError{addr: addr, since: d.since, err: d.err, retry: d.used.Sub(d.refused) < retryFor}
}

// markDown records that addr refused a connection, and starts probing it.
func (h *nodeHealth) markDown(addr string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	now := time.Now()
	if d := h.down[addr]; d != nil {
		d.err, d.refused = err, now
		return
	}
	d := &downNode{since: now, refused: now, used: now, err: err}
	h.down[addr] = d
	h.wg.Add(1)
	go h.probe(addr, d)
}

// probe dials addr until it accepts a connection (then commands go to it
// again), until nobody has asked for it for forgetAfter, or until close.
func (h *nodeHealth) probe(addr string, d *downNode) {
	defer h.wg.Done()
	wait := probeMin
	for {
		select {
		case <-h.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, probeMax)
		c, err := net.DialTimeout("tcp", addr, probeTimeout)
		if err == nil {
			_ = c.Close()
		}
		h.mu.Lock()
		forget := err != nil && time.Since(d.used) > forgetAfter
		if err == nil || forget {
			if h.down[addr] == d {
				delete(h.down, addr)
			}
		} else {
			d.err = err
		}
		h.mu.Unlock()
		if err == nil || forget {
			if err == nil {
				h.reload() // back: maybe as a replica of the node that took over
			}
			return
		}
	}
}

// checkKeys returns the error for a batch of commands on keys if one of
// them lives on a node that refuses connections, else nil. It reads the
// client's cached slot layout only.
func (h *nodeHealth) checkKeys(ctx context.Context, keys ...string) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	n := len(h.down)
	h.mu.Unlock()
	if n == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, k := range keys {
		c, err := h.cc.MasterForKey(ctx, k)
		if err != nil {
			return nil // let the command itself say
		}
		addr := c.Options().Addr
		if seen[addr] {
			continue
		}
		seen[addr] = true
		if err := h.failFast(addr); err != nil {
			return err
		}
	}
	return nil
}

// observe reacts to the outcome of a command (or pipeline) on a node.
func (h *nodeHealth) observe(err error) {
	if err == nil || err == goredis.Nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	if errors.Is(err, ErrNodeUnreachable) || reloadOn(err) {
		h.reload()
	}
}

// reloadOn reports whether err says the slot layout may have changed: a
// node unreachable or gone, or a cluster reconfiguring itself.
func reloadOn(err error) bool {
	var reply goredis.Error
	if errors.As(err, &reply) {
		return goredis.IsClusterDownError(err) || goredis.IsTryAgainError(err) || goredis.IsMasterDownError(err) ||
			goredis.IsLoadingError(err) || goredis.IsReadOnlyError(err)
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE)
}

// refused reports whether a dial error says the address does not accept
// connections (refused, unreachable), rather than that the dial ran out
// of time, which may be the caller's short deadline.
func refused(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var netErr net.Error
	return !errors.As(err, &netErr) || !netErr.Timeout()
}

// nodeHook is installed on every node client of a Cluster client made by
// Open.
type nodeHook struct {
	h    *nodeHealth
	addr string
}

func (n nodeHook) DialHook(next goredis.DialHook) goredis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if refused(err) {
			n.h.markDown(n.addr, err)
			n.h.reload()
		}
		return c, err
	}
}

func (n nodeHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		if err := n.h.failFast(n.addr); err != nil {
			n.h.reload()
			return err
		}
		err := next(ctx, cmd)
		n.h.observe(err)
		return err
	}
}

func (n nodeHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		if err := n.h.failFast(n.addr); err != nil {
			n.h.reload()
			for _, c := range cmds {
				c.SetErr(err)
			}
			return err
		}
		err := next(ctx, cmds)
		n.h.observe(err)
		return err
	}
}
