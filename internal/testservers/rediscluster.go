package testservers

import (
	"bytes"
	"context"
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

// RedisClusterServer is a private Redis Cluster of RedisClusterNodes
// masters (no replicas) on 127.0.0.1, every hash slot assigned and
// cluster_state:ok.
type RedisClusterServer struct {
	nodes []*Server
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

// URL returns the cluster in the form the sessions redis driver reads:
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
var redisClusterNodeSpec = func() *spec {
	sp := *redisSpec
	sp.name = "redis-cluster-node"
	sp.ctor = "RedisCluster"
	sp.args = func(p *proc) (string, []string) {
		bin, args := redisSpec.args(p)
		bus, err := freePort()
		if err != nil {
			bus = 0 // redis's default, port + 10000
		}
		return bin, append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus),
			"--cluster-node-timeout", "5000",
		)
	}
	return &sp
}()
