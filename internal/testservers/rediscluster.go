package testservers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RedisClusterNodes is the number of masters RedisCluster starts.
const RedisClusterNodes = 3

// RedisClusterServer is a private Redis Cluster on 127.0.0.1 of
// RedisClusterNodes masters, without replicas (RedisCluster) or with one
// each (RedisClusterWithReplicas), every hash slot assigned and
// cluster_state:ok.
type RedisClusterServer struct {
	nodes    []*Server
	replicas int // the last replicas of nodes were started as replicas
}

// Nodes returns the cluster's redis-server processes. Each may be killed
// and restarted like any private server, but a restarted node keeps its
// cluster configuration (nodes.conf) while losing its data.
func (c *RedisClusterServer) Nodes() []*Server { return c.nodes }

// Addrs returns the nodes' addresses, "127.0.0.1:PORT".
func (c *RedisClusterServer) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL returns the cluster in the form the sessions redis driver reads,
// every node a seed:
// redis://127.0.0.1:P1?cluster=true&addr=127.0.0.1:P2&addr=127.0.0.1:P3.
func (c *RedisClusterServer) URL() string {
	var b strings.Builder
	b.WriteString("redis://" + c.nodes[0].Addr() + "?cluster=true")
	for _, n := range c.nodes[1:] {
		b.WriteString("&addr=" + n.Addr())
	}
	return b.String()
}

// Close stops every node and removes their directories. It is idempotent;
// RedisCluster calls it from t.Cleanup.
func (c *RedisClusterServer) Close() error {
	var first error
	for _, n := range c.nodes {
		if err := n.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// RedisCluster starts a private Redis Cluster for t, stopped at t's
// cleanup: RedisClusterNodes redis-server processes started as Redis starts
// one, plus --cluster-enabled yes, joined with
// "redis-cli --cluster create ... --cluster-yes", and waits until every
// node reports cluster_state:ok. It takes one to two seconds. A missing
// redis-server or redis-cli (package redis-tools) skips the test, or fails
// it with SESSIONS_REQUIRE_SERVERS=1.
func RedisCluster(t testing.TB) *RedisClusterServer {
	t.Helper()
	c, err := StartRedisCluster()
	if err != nil {
		failOrSkip(t, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("testservers: %v", err)
		}
	})
	return c
}

// StartRedisCluster is RedisCluster without a testing.TB; the caller must
// Close the cluster.
func StartRedisCluster() (*RedisClusterServer, error) {
	cli := lookBinary([]string{"redis-cli"}, "/usr/bin", "/usr/local/bin")
	if cli == "" {
		return nil, &notInstalledError{"redis-cli", "redis-tools"}
	}
	c := &RedisClusterServer{}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	for range RedisClusterNodes {
		s, err := startPrivate(redisClusterNodeSpec)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	cmd := exec.CommandContext(ctx, cli, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("testservers: redis-cli --cluster create %s: %v\n%s", strings.Join(c.Addrs(), " "), err, out.String())
	}
	for _, n := range c.nodes {
		if err := waitClusterOK(ctx, cli, n); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// waitClusterOK polls CLUSTER INFO on one node until cluster_state:ok.
func waitClusterOK(ctx context.Context, cli string, n *Server) error {
	var last string
	for {
		out, err := exec.CommandContext(ctx, cli, "-h", "127.0.0.1", "-p", strconv.Itoa(n.Port()), "cluster", "info").CombinedOutput()
		last = strings.TrimSpace(string(out))
		if err == nil && strings.Contains(last, "cluster_state:ok") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testservers: redis cluster node %s not ok after %v: %s%s", n.Addr(), ReadyTimeout, last, n.p.tailForError())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redisClusterNodeSpec is redisSpec with cluster mode on. The cluster bus
// port is chosen free for each start (by default it would be the port +
// 10000, which may be taken or above 65535).
var redisClusterNodeSpec = clusterNodeSpec("RedisCluster", 5000)

// redisClusterReplicaNodeSpec is redisClusterNodeSpec with the node
// timeout of RedisClusterWithReplicas, and a replica's initial sync starts
// at once (repl-diskless-sync-delay is 5 s by default).
var redisClusterReplicaNodeSpec = clusterNodeSpec("RedisClusterWithReplicas", RedisClusterNodeTimeout.Milliseconds(),
	"--repl-diskless-sync-delay", "0")

func clusterNodeSpec(ctor string, nodeTimeoutMillis int64, extra ...string) *spec {
	sp := *redisSpec
	sp.name = "redis-cluster-node"
	sp.ctor = ctor
	sp.args = func(p *proc) (string, []string) {
		bin, args := redisSpec.args(p)
		bus, err := freePort()
		if err != nil {
			bus = 0 // redis's default, port + 10000
		}
		return bin, append(append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", strconv.FormatInt(nodeTimeoutMillis, 10),
		), extra...)
	}
	return &sp
}

// ---- Redis Cluster with replicas ----

// RedisClusterNodeTimeout is the cluster-node-timeout of the nodes
// RedisClusterWithReplicas starts: a master unreachable this long is
// flagged as failing, and its replica is promoted about a second later.
const RedisClusterNodeTimeout = 1000 * time.Millisecond

// RedisClusterWithReplicas starts a private Redis Cluster for t, stopped at
// t's cleanup: RedisClusterNodes masters, each with one replica (so
// 2*RedisClusterNodes processes), cluster-node-timeout
// RedisClusterNodeTimeout and Redis's other defaults
// (cluster-require-full-coverage yes: while a master is down and not yet
// replaced, every node answers CLUSTERDOWN). It waits until every node
// reports cluster_state:ok and every replica has completed its initial
// sync, so that killing a master (Server.Kill) makes its replica take over
// within about two seconds. Masters and Replicas tell the roles at start;
// after a failover ask the cluster (CLUSTER SLOTS, or go-redis's
// MasterForKey) and find the process with Node. It takes two to three
// seconds. A missing redis-server or redis-cli skips the test, or fails it
// with SESSIONS_REQUIRE_SERVERS=1.
func RedisClusterWithReplicas(t testing.TB) *RedisClusterServer {
	t.Helper()
	c, err := StartRedisClusterWithReplicas()
	if err != nil {
		failOrSkip(t, err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("testservers: %v", err)
		}
	})
	return c
}

// StartRedisClusterWithReplicas is RedisClusterWithReplicas without a
// testing.TB; the caller must Close the cluster.
func StartRedisClusterWithReplicas() (*RedisClusterServer, error) {
	cli := lookBinary([]string{"redis-cli"}, "/usr/bin", "/usr/local/bin")
	if cli == "" {
		return nil, &notInstalledError{"redis-cli", "redis-tools"}
	}
	c := &RedisClusterServer{replicas: RedisClusterNodes}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	for range 2 * RedisClusterNodes {
		s, err := startPrivate(redisClusterReplicaNodeSpec)
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*ReadyTimeout)
	defer cancel()
	// Set up by hand rather than with redis-cli --cluster create and
	// add-node, which wait a second at a time: slots and config epochs on
	// the masters, MEET, then CLUSTER REPLICATE on each replica, so that
	// Replicas()[i] replicates Masters()[i].
	node := func(n *Server, args ...string) (string, error) {
		out, err := runCLI(ctx, cli, append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(n.Port())}, args...)...)
		out = strings.TrimSpace(out)
		if err == nil && strings.HasPrefix(out, "ERR") {
			err = errors.New(out)
		}
		if err != nil {
			return "", fmt.Errorf("testservers: redis cluster node %s: %s: %v", n.Addr(), strings.Join(args, " "), err)
		}
		return out, nil
	}
	const slots = 16384
	// Each node's ID and cluster bus port, from its own line of CLUSTER
	// NODES: "<id> 127.0.0.1:<port>@<bus> myself,master - ...".
	ids, buses := make([]string, len(c.nodes)), make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out, err := node(n, "cluster", "nodes")
		if err != nil {
			return nil, err
		}
		var f []string
		for line := range strings.Lines(out) {
			if strings.Contains(line, "myself") {
				f = strings.Fields(line)
			}
		}
		var bus string
		if len(f) >= 2 {
			_, bus, _ = strings.Cut(f[1], "@")
			bus, _, _ = strings.Cut(bus, ",") // a hostname may follow
		}
		if bus == "" {
			return nil, fmt.Errorf("testservers: redis cluster node %s: CLUSTER NODES says %q", n.Addr(), out)
		}
		ids[i], buses[i] = f[0], bus
	}
	for i, m := range c.Masters() {
		from, to := i*slots/RedisClusterNodes, (i+1)*slots/RedisClusterNodes-1
		if _, err := node(m, "cluster", "addslotsrange", strconv.Itoa(from), strconv.Itoa(to)); err != nil {
			return nil, err
		}
		if _, err := node(m, "cluster", "set-config-epoch", strconv.Itoa(i+1)); err != nil {
			return nil, err
		}
	}
	for i, n := range c.nodes[1:] {
		if _, err := node(c.nodes[0], "cluster", "meet", "127.0.0.1", strconv.Itoa(n.Port()), buses[i+1]); err != nil {
			return nil, err
		}
	}
	for i, r := range c.Replicas() {
		// A replica must know its master first: retry until it does.
		for {
			_, err := node(r, "cluster", "replicate", ids[i])
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return nil, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, n := range c.nodes {
		if err := waitClusterOK(ctx, cli, n); err != nil {
			return nil, err
		}
	}
	for _, r := range c.Replicas() {
		if err := waitReplicaSynced(ctx, cli, r); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// runCLI runs redis-cli with args and returns its combined output.
func runCLI(ctx context.Context, cli string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, cli, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	return out.String(), err
}

// waitReplicaSynced polls INFO replication on a replica until its link to
// the master is up and the initial sync is over.
func waitReplicaSynced(ctx context.Context, cli string, n *Server) error {
	var last string
	for {
		out, err := runCLI(ctx, cli, "-h", "127.0.0.1", "-p", strconv.Itoa(n.Port()), "info", "replication")
		last = strings.TrimSpace(out)
		if err == nil && strings.Contains(last, "role:slave") && strings.Contains(last, "master_link_status:up") &&
			strings.Contains(last, "master_sync_in_progress:0") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testservers: redis cluster replica %s not in sync: %s%s", n.Addr(), last, n.p.tailForError())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Masters returns the processes started as masters (all of Nodes for
// RedisCluster, the first RedisClusterNodes for RedisClusterWithReplicas).
// A failover changes the roles: this is the start's view.
func (c *RedisClusterServer) Masters() []*Server { return c.nodes[:len(c.nodes)-c.replicas] }

// Replicas returns the processes started as replicas, Replicas()[i] of
// Masters()[i] (none for RedisCluster).
func (c *RedisClusterServer) Replicas() []*Server { return c.nodes[len(c.nodes)-c.replicas:] }

// Node returns the process listening on addr ("127.0.0.1:PORT"), or nil.
func (c *RedisClusterServer) Node(addr string) *Server {
	for _, n := range c.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}
