package testservers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Redis Sentinel topology started by RedisSentinel.
const (
	// RedisSentinelMasterName is the name the Sentinels monitor the
	// master under (the driver's master_name option).
	RedisSentinelMasterName = "sessions-master"
	// RedisSentinelReplicas is the number of replicas of the master.
	RedisSentinelReplicas = 2
	// RedisSentinelSentinels is the number of Sentinels; the quorum is 2.
	RedisSentinelSentinels = 3
)

// RedisSentinelServer is a private Redis Sentinel deployment on 127.0.0.1:
// one master, RedisSentinelReplicas replicas (--replicaof the master) and
// RedisSentinelSentinels Sentinels monitoring the master as
// RedisSentinelMasterName with quorum 2, down-after-milliseconds 1000 and
// failover-timeout 5000. Every process is a private server as Redis starts
// one (persistence off), so a killed master loses its data but a replica
// promoted by the Sentinels keeps what had reached it.
type RedisSentinelServer struct {
	master    *Server
	replicas  []*Server
	sentinels []*Server
}

// Master returns the redis-server the deployment started as its master.
// After a failover it is no longer the master: ask the Sentinels
// (SENTINEL get-master-addr-by-name) which one is.
func (s *RedisSentinelServer) Master() *Server { return s.master }

// Replicas returns the redis-servers started as replicas of Master.
func (s *RedisSentinelServer) Replicas() []*Server { return s.replicas }

// Sentinels returns the Sentinel processes (redis-server --sentinel).
// Their Addr is a Sentinel address; their URL is not meaningful.
func (s *RedisSentinelServer) Sentinels() []*Server { return s.sentinels }

// SentinelAddrs returns the Sentinels' addresses, "127.0.0.1:PORT".
func (s *RedisSentinelServer) SentinelAddrs() []string {
	out := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		out[i] = n.Addr()
	}
	return out
}

// URL returns the deployment in the form the sessions redis driver reads,
// every Sentinel listed, database 0:
// redis://127.0.0.1:S1/0?master_name=sessions-master&addr=127.0.0.1:S2&addr=127.0.0.1:S3.
func (s *RedisSentinelServer) URL() string {
	var b strings.Builder
	b.WriteString("redis://" + s.sentinels[0].Addr() + "/0?master_name=" + RedisSentinelMasterName)
	for _, n := range s.sentinels[1:] {
		b.WriteString("&addr=" + n.Addr())
	}
	return b.String()
}

// Close kills every process (the Sentinels first, so that they do not
// start a failover while the data nodes go) and removes their directories.
// It is idempotent; RedisSentinel calls it from t.Cleanup.
func (s *RedisSentinelServer) Close() error {
	var first error
	closeAll := func(servers []*Server) {
		errs := make([]error, len(servers))
		var wg sync.WaitGroup
		for i, n := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = n.Close()
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil && first == nil {
			first = err
		}
	}
	closeAll(s.sentinels)
	var data []*Server
	if s.master != nil {
		data = append(data, s.master)
	}
	closeAll(append(data, s.replicas...))
	return first
}

// RedisSentinel starts a private Redis Sentinel deployment for t, stopped
// at t's cleanup: the master, then the replicas, waiting until the master
// reports both online, then the Sentinels, waiting until each reports the
// master (not down), both replicas with their link to it up, and the
// other Sentinels, so that a failover can start as soon as the master
// dies. It takes 0.1 to 0.3 s (the Sentinels are introduced to each other
// rather than left to find each other in about 2 s). The Sentinels are
// redis-server CONF --sentinel, so redis-server is the only binary needed;
// a missing one skips the test, or fails it with
// SESSIONS_REQUIRE_SERVERS=1.
//
// The processes may be killed and restarted like any private server
// (Server.Kill, Restart). Killing Master makes the Sentinels promote a
// replica within a few seconds (about 1 s to agree the master is down, up
// to 1 s of random delay, then the election and the promotion). A
// restarted process comes back with its command line: a replica replicates
// the original master again until the Sentinels reconfigure it, and a
// restarted Sentinel reads its own config file, which it rewrote with what
// it had learnt.
func RedisSentinel(t testing.TB) *RedisSentinelServer {
	t.Helper()
	s, err := StartRedisSentinel()
	if err != nil {
		failOrSkip(t, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("testservers: %v", err)
		}
	})
	return s
}

// StartRedisSentinel is RedisSentinel without a testing.TB; the caller
// must Close the deployment.
func StartRedisSentinel() (*RedisSentinelServer, error) {
	s := &RedisSentinelServer{}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	var err error
	if s.master, err = startPrivate(redisSentinelDataSpec("redis-sentinel-master", nil)); err != nil {
		return nil, err
	}
	masterPort := strconv.Itoa(s.master.Port())
	if err := startAll(RedisSentinelReplicas, &s.replicas, redisSentinelDataSpec("redis-sentinel-replica",
		[]string{"--replicaof", "127.0.0.1", masterPort})); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	if err := s.waitReplicasOnline(ctx); err != nil {
		return nil, err
	}
	if err := startAll(RedisSentinelSentinels, &s.sentinels, redisSentinelSpec(masterPort)); err != nil {
		return nil, err
	}
	if err := s.introduceSentinels(ctx); err != nil {
		return nil, err
	}
	for _, n := range s.sentinels {
		if err := s.waitSentinelReady(ctx, n); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// startAll starts n servers of one spec concurrently and appends them to
// *out in a stable order.
func startAll(n int, out *[]*Server, sp *spec) error {
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = startPrivate(sp)
		}()
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			*out = append(*out, s)
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// waitReplicasOnline polls INFO replication on the master until every
// replica is in state online (its initial sync done).
func (s *RedisSentinelServer) waitReplicasOnline(ctx context.Context) error {
	var last string
	for {
		r, err := respDo(ctx, s.master.Addr(), "INFO", "replication")
		if err == nil {
			info, _ := r.(string)
			last = info
			if strings.Count(info, ",state=online,") == RedisSentinelReplicas {
				return nil
			}
		} else {
			last = err.Error()
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("testservers: the replicas of redis master %s not online after %v:\n%s%s",
				s.master.Addr(), ReadyTimeout, strings.TrimSpace(last), s.master.p.tailForError())
		}
	}
}

// introduceSentinels makes every Sentinel know the others at once, by
// publishing to it, on its __sentinel__:hello channel, the hello message
// each other Sentinel would publish on the master within 2 s (Sentinel
// accepts PUBLISH on that channel for exactly this). Without it the
// Sentinels discover each other on their own within about 2 s; if it fails
// they still do, so its errors are not reported.
func (s *RedisSentinelServer) introduceSentinels(ctx context.Context) error {
	ids := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		r, err := respDo(ctx, n.Addr(), "SENTINEL", "MYID")
		id, _ := r.(string)
		if err != nil || len(id) != 40 {
			return nil // an old Sentinel: let the hellos do it
		}
		ids[i] = id
	}
	for i, to := range s.sentinels {
		for j, from := range s.sentinels {
			if i == j {
				continue
			}
			// ip,port,runid,current_epoch,master_name,master_ip,master_port,master_config_epoch
			hello := fmt.Sprintf("127.0.0.1,%d,%s,0,%s,127.0.0.1,%d,0",
				from.Port(), ids[j], RedisSentinelMasterName, s.master.Port())
			_, _ = respDo(ctx, to.Addr(), "PUBLISH", "__sentinel__:hello", hello)
		}
	}
	return nil
}

// waitSentinelReady polls one Sentinel until it sees the master up, every
// replica with its link to the master up, and every other Sentinel.
func (s *RedisSentinelServer) waitSentinelReady(ctx context.Context, n *Server) error {
	var last string
	for {
		last = s.sentinelState(ctx, n)
		if last == "" {
			return nil
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return fmt.Errorf("testservers: redis sentinel %s not ready after %v: %s%s",
				n.Addr(), ReadyTimeout, last, n.p.tailForError())
		}
	}
}

// sentinelState returns "" if Sentinel n is ready, else what is missing.
func (s *RedisSentinelServer) sentinelState(ctx context.Context, n *Server) string {
	r, err := respDo(ctx, n.Addr(), "SENTINEL", "MASTER", RedisSentinelMasterName)
	if err != nil {
		return "SENTINEL MASTER: " + err.Error()
	}
	m := respMap(r)
	if addr := net.JoinHostPort(m["ip"], m["port"]); addr != s.master.Addr() {
		return fmt.Sprintf("master is %s, want %s", addr, s.master.Addr())
	}
	if m["flags"] != "master" {
		return "master flags " + m["flags"]
	}
	if m["num-slaves"] != strconv.Itoa(RedisSentinelReplicas) || m["num-other-sentinels"] != strconv.Itoa(RedisSentinelSentinels-1) {
		return fmt.Sprintf("sees %s replicas and %s other sentinels", m["num-slaves"], m["num-other-sentinels"])
	}
	r, err = respDo(ctx, n.Addr(), "SENTINEL", "REPLICAS", RedisSentinelMasterName)
	if err != nil {
		return "SENTINEL REPLICAS: " + err.Error()
	}
	list, _ := r.([]any)
	for _, e := range list {
		rm := respMap(e)
		if rm["flags"] != "slave" || rm["master-link-status"] != "ok" {
			return fmt.Sprintf("replica %s:%s has flags %s, master-link-status %s", rm["ip"], rm["port"], rm["flags"], rm["master-link-status"])
		}
	}
	return ""
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// redisSentinelDataSpec is redisSpec for a master or replica of the
// Sentinel deployment, with extra arguments. Full syncs start at once
// (redis 7 waits 5 s for more replicas before a diskless sync).
func redisSentinelDataSpec(name string, extra []string) *spec {
	sp := *redisSpec
	sp.name = name
	sp.ctor = "RedisSentinel"
	sp.args = func(p *proc) (string, []string) {
		bin, args := redisSpec.args(p)
		args = append(args, "--repl-diskless-sync-delay", "0")
		return bin, append(args, extra...)
	}
	return &sp
}

// redisSentinelSpec runs a Sentinel (redis-server CONF --sentinel)
// monitoring the master on 127.0.0.1:masterPort. The config file, which
// Sentinel rewrites as it learns, is written once, before the first start.
func redisSentinelSpec(masterPort string) *spec {
	sp := *redisSpec
	sp.name = "redis-sentinel"
	sp.ctor = "RedisSentinel"
	sp.init = func(p *proc) error {
		conf := strings.Join([]string{
			"sentinel monitor " + RedisSentinelMasterName + " 127.0.0.1 " + masterPort + " 2",
			"sentinel down-after-milliseconds " + RedisSentinelMasterName + " 1000",
			"sentinel failover-timeout " + RedisSentinelMasterName + " 5000",
			"",
		}, "\n")
		path := sentinelConf(p)
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return fmt.Errorf("testservers: %v", err)
		}
		if p.cred != nil {
			if err := os.Chown(path, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
				return fmt.Errorf("testservers: %v", err)
			}
		}
		return nil
	}
	sp.args = func(p *proc) (string, []string) {
		return p.bins["server"], []string{
			sentinelConf(p), "--sentinel",
			"--port", strconv.Itoa(p.port),
			"--bind", "127.0.0.1",
			"--protected-mode", "no",
			"--dir", p.root,
			"--daemonize", "no",
			"--logfile", "",
		}
	}
	return &sp
}

func sentinelConf(p *proc) string { return filepath.Join(p.root, "sentinel.conf") }

// ---- a minimal RESP2 client ----

// respError is an error reply.
type respError string

func (e respError) Error() string { return string(e) }

// respDo sends one command on a new connection and returns the reply: a
// string (simple or bulk), an int64, a []any, nil, or a respError.
func respDo(ctx context.Context, addr string, args ...string) (any, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, err
	}
	return respRead(bufio.NewReader(c))
}

func respRead(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("empty reply line")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return nil, respError(line[1:])
	case ':':
		return strconv.ParseInt(line[1:], 10, 64)
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = respRead(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unexpected reply %q", line)
}

// respMap reads a flat array of field, value pairs (SENTINEL MASTER).
func respMap(r any) map[string]string {
	m := map[string]string{}
	list, _ := r.([]any)
	for i := 0; i+1 < len(list); i += 2 {
		k, _ := list[i].(string)
		v, _ := list[i+1].(string)
		m[k] = v
	}
	return m
}
