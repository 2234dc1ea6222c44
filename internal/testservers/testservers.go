package testservers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout bounds how long a start or restart waits for a server to
// answer a protocol-level ping before giving up.
const ReadyTimeout = 60 * time.Second

// stopTimeout bounds a graceful stop; after it the process group is killed.
const stopTimeout = 30 * time.Second

// ErrNotInstalled is matched (with errors.Is) by the error returned when a
// server binary cannot be found.
var ErrNotInstalled = errors.New("server binary not installed")

// notInstalledError names the missing binary and the Debian package that
// provides it.
type notInstalledError struct {
	binary, pkg string
}

func (e *notInstalledError) Error() string {
	return e.binary + " not found: apt-get install " + e.pkg
}

func (e *notInstalledError) Is(target error) bool { return target == ErrNotInstalled }

// Server is a running (or stopped) server process started by this package,
// or a view of a shared server that gives one caller its own database.
// All methods are safe for concurrent use.
type Server struct {
	p      *proc
	db     string // database name; redis DB number; "" for memcached
	shared bool
	close  func() error // for shared views: releases the caller's database
}

// Addr returns the server's TCP address, "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.p.addr() }

// Port returns the TCP port the server listens on.
func (s *Server) Port() int { return s.p.port }

// DB returns the caller's database: the database name for PostgreSQL and
// MariaDB, the logical database number in decimal for redis, and "" for
// memcached.
func (s *Server) DB() string { return s.db }

// Dir returns the server's private temporary directory (data, socket and
// log live below it). It is removed when the server is closed.
func (s *Server) Dir() string { return s.p.root }

// LogTail returns up to the last n bytes of the server's log (its stdout
// and stderr).
func (s *Server) LogTail(n int) string { return s.p.logTail(n) }

// URL returns a URL for the server:
//
//	redis:     redis://127.0.0.1:PORT/DB
//	memcached: memcached://127.0.0.1:PORT
//	postgres:  postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable
//	mariadb:   mysql://root@127.0.0.1:PORT/DB
//
// The mysql:// form is a plain URL (user, host, port, database) and is not
// accepted by go-sql-driver/mysql; use DSN for the driver.
func (s *Server) URL() string {
	switch s.p.spec.kind {
	case kindRedis:
		return "redis://" + s.Addr() + "/" + s.db
	case kindMemcached:
		return "memcached://" + s.Addr()
	case kindPostgres:
		return "postgres://" + pgUser + "@" + s.Addr() + "/" + s.db + "?sslmode=disable"
	case kindMariaDB:
		return "mysql://" + mariaUser + "@" + s.Addr() + "/" + s.db
	}
	panic("unreachable")
}

// DSN returns the driver-native connection string: for PostgreSQL a pgx
// DSN (the same as URL), for MariaDB a go-sql-driver/mysql DSN
// "root@tcp(127.0.0.1:PORT)/DB?parseTime=true", and for redis and memcached
// the address (as Addr; for redis the DB number is only in URL and DB).
func (s *Server) DSN() string {
	switch s.p.spec.kind {
	case kindPostgres:
		return s.URL()
	case kindMariaDB:
		return mariaUser + "@tcp(" + s.Addr() + ")/" + s.db + "?parseTime=true"
	}
	return s.Addr()
}

// Kill sends SIGKILL to the server (its whole process group) and waits for
// it to exit. Killing a server that is not running does nothing. It fails
// the test on a shared server.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.noShared(t, "Kill")
	if err := s.p.kill(); err != nil {
		t.Fatal(err)
	}
}

// Stop stops the server gracefully (SIGTERM; SIGINT, a "fast shutdown", for
// PostgreSQL) and waits for it to exit; after 30 s it is killed. memcached
// takes about a second to exit on SIGTERM. Stopping a
// server that is not running does nothing. It fails the test on a shared
// server.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.noShared(t, "Stop")
	if err := s.p.stop(); err != nil {
		t.Fatal(err)
	}
}

// Pause sends SIGSTOP to the server's process group and waits until every
// thread of the server process has stopped: the server keeps its port and
// its connections (the kernel still accepts new ones) but answers nothing,
// as a hung server would, until Resume. A cleanup registered with t
// resumes it. It fails the test on a shared server or one not running.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.noShared(t, "Pause")
	if err := s.p.signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.p.signal(syscall.SIGCONT) })
	if err := s.p.waitStopped(); err != nil {
		t.Fatal(err)
	}
}

// Resume sends SIGCONT to a server paused by Pause; resuming a server that
// is not paused does nothing. It fails the test on a shared server or one
// not running.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.noShared(t, "Resume")
	if err := s.p.signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// Restart starts the server again on the same port with the same data
// directory and waits until it answers a ping. A running server is stopped
// gracefully first. PostgreSQL and MariaDB keep their data; redis and
// memcached come back empty. It fails the test on a shared server.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.noShared(t, "Restart")
	if err := s.p.restart(); err != nil {
		t.Fatal(err)
	}
}

// Close stops the server (gracefully, killing it after 30 s; redis and
// memcached, which have nothing to save, are simply killed) and removes its
// temporary directory. For a view of a shared server it only drops the
// caller's database. Close is idempotent. The test constructors call it from
// t.Cleanup; callers of the Start functions must call it themselves.
func (s *Server) Close() error {
	if s.close != nil {
		return s.close()
	}
	return s.p.close()
}

func (s *Server) noShared(t testing.TB, op string) {
	t.Helper()
	if s.shared {
		t.Fatalf("testservers: %s on a shared %s server; use a private server (e.g. testservers.%s(t)) for tests that stop servers",
			op, s.p.spec.name, s.p.spec.ctor)
	}
}

// fromTB turns a start result into a test's server: it skips (or, with
// SESSIONS_REQUIRE_SERVERS=1, fails) when the binary is missing, fails on
// any other error, and registers Close with t.Cleanup.
func fromTB(t testing.TB, s *Server, err error) *Server {
	t.Helper()
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

func failOrSkip(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("SESSIONS_REQUIRE_SERVERS") != "1" {
		t.Skip(err.Error())
	}
	t.Fatal(err.Error())
}

// ---- process management ----

type proc struct {
	spec *spec
	bins map[string]string // role -> absolute path
	port int
	root string // private temp dir
	data string // data dir (below root)
	cred *syscall.Credential

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been reaped
	logf    *os.File
	closed  bool
	started time.Time
}

func (p *proc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

func (p *proc) logPath() string { return filepath.Join(p.root, "server.log") }

// start starts a new server of the given spec: binaries, temp dir, one-time
// initialisation, start on a free port (retrying on a port race), readiness,
// and post-start setup.
func startServer(sp *spec) (*proc, error) {
	bins, err := sp.find()
	if err != nil {
		return nil, err
	}
	p := &proc{spec: sp, bins: bins}
	p.cred, err = serverCredential()
	if err != nil {
		return nil, err
	}
	if p.root, err = makeRoot(sp.name, p.cred); err != nil {
		return nil, err
	}
	p.data = filepath.Join(p.root, "data")
	ok := false
	defer func() {
		if !ok {
			p.close()
		}
	}()
	if p.logf, err = os.OpenFile(p.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		return nil, fmt.Errorf("testservers: %v", err)
	}
	if sp.init != nil {
		if err := sp.init(p); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	const attempts = 3
	for i := 1; ; i++ {
		p.port, err = freePort()
		if err != nil {
			return nil, err
		}
		err = p.startAndWait(ctx)
		if err == nil {
			break
		}
		var ee *earlyExitError
		if i < attempts && errors.As(err, &ee) && ee.portInUse() {
			continue // someone took the port between freePort and bind
		}
		return nil, err
	}
	if sp.setup != nil {
		if err := sp.setup(ctx, p); err != nil {
			return nil, fmt.Errorf("testservers: setting up %s on %s: %v%s", sp.name, p.addr(), err, p.tailForError())
		}
	}
	ok = true
	return p, nil
}

// earlyExitError reports a server that exited before becoming ready.
type earlyExitError struct {
	name, addr string
	waitErr    string
	log        string // log written by this attempt
	tail       string
}

func (e *earlyExitError) Error() string {
	return fmt.Sprintf("testservers: %s on %s exited before becoming ready (%s)%s", e.name, e.addr, e.waitErr, e.tail)
}

func (e *earlyExitError) portInUse() bool {
	l := strings.ToLower(e.log)
	return strings.Contains(l, "address already in use") || strings.Contains(l, "can't bind") ||
		strings.Contains(l, "could not bind") || strings.Contains(l, "failed to listen")
}

// startAndWait launches the server process on p.port and waits until it
// answers a ping, or it exits, or ctx expires.
func (p *proc) startAndWait(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("testservers: %s server is closed", p.spec.name)
	}
	if p.cmd != nil {
		p.mu.Unlock()
		return fmt.Errorf("testservers: %s on %s is already running", p.spec.name, p.addr())
	}
	logStart, _ := p.logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(p.logf, "\n==== testservers: starting %s on %s at %s ====\n", p.spec.name, p.addr(), time.Now().Format(time.RFC3339Nano))
	bin, args := p.spec.args(p)
	cmd := p.command(bin, args...)
	if err := spawn(cmd); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("testservers: starting %s: %v", bin, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.started = cmd, exited, time.Now()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.mu.Unlock()

	var lastErr error
	delay := 2 * time.Millisecond
	for {
		select {
		case <-exited:
			p.mu.Lock()
			if p.cmd == cmd {
				p.cmd = nil
			}
			p.mu.Unlock()
			return &earlyExitError{
				name: p.spec.name, addr: p.addr(), waitErr: cmd.ProcessState.String(),
				log: p.logSince(logStart), tail: p.tailForError(),
			}
		case <-ctx.Done():
			_ = p.kill()
			return fmt.Errorf("testservers: %s on %s not ready after %v: %v%s", p.spec.name, p.addr(), ReadyTimeout, lastErr, p.tailForError())
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = p.spec.ping(pctx, p)
		cancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-exited:
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// command builds an exec.Cmd that runs as the server user, in its own
// process group, with Pdeathsig, logging to the server log.
func (p *proc) command(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Dir = p.root
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + p.root,
		"TMPDIR=" + p.root,
		"LC_ALL=C",
		"TZ=UTC",
	}
	cmd.Stdout = p.logf
	cmd.Stderr = p.logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
		Credential: p.cred,
	}
	return cmd
}

// runTool runs a one-shot helper (initdb, mariadb-install-db) as the server
// user and returns an error with the log tail if it fails.
func (p *proc) runTool(ctx context.Context, bin string, args ...string) error {
	fmt.Fprintf(p.logf, "==== testservers: running %s %s ====\n", bin, strings.Join(args, " "))
	cmd := p.command(bin, args...)
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("testservers: running %s: %v", bin, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("testservers: %s failed: %v%s", filepath.Base(bin), err, p.tailForError())
		}
		return nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("testservers: %s timed out%s", filepath.Base(bin), p.tailForError())
	}
}

// signal sends sig to the running server's process group.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("testservers: %s on %s is not running", p.spec.name, p.addr())
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("testservers: %v to %s on %s: %v", sig, p.spec.name, p.addr(), err)
	}
	if sig == syscall.SIGSTOP || sig == syscall.SIGCONT {
		// PostgreSQL's backends make themselves group leaders (setsid):
		// they get the signal one by one.
		for _, pid := range descendants(cmd.Process.Pid) {
			_ = syscall.Kill(pid, sig)
		}
	}
	return nil
}

// procStat returns a process's state and parent from /proc/PID/stat.
func procStat(pid string) (state string, ppid int, ok bool) {
	stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...: comm may hold spaces.
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0], ppid, err == nil
}

// descendants lists the processes below pid (none without /proc).
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(e.Name()); ok {
			children[ppid] = append(children[ppid], n)
		}
	}
	var out []int
	for queue := children[pid]; len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children[queue[0]]...)
	}
	return out
}

// waitStopped waits (bounded) until every thread of the server process is
// in the stopped state: kill(2) only queues SIGSTOP, and on a loaded
// machine a thread may serve a request or two before it is scheduled to
// take it.
func (p *proc) waitStopped() error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("testservers: %s on %s is not running", p.spec.name, p.addr())
	}
	tasks := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "task")
	deadline := time.Now().Add(10 * time.Second)
	for {
		stopped, err := allStopped(tasks)
		if err == nil && stopped {
			// Multi-process servers (PostgreSQL's backends): every
			// process below it, too.
			stopped = descendantsStopped(cmd.Process.Pid)
		}
		if err != nil || stopped {
			return err // no /proc: nothing to wait with
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("testservers: %s on %s did not stop within 10s of SIGSTOP", p.spec.name, p.addr())
		}
		time.Sleep(time.Millisecond)
	}
}

// descendantsStopped reports whether every process below pid is in state
// T (stopped); true without /proc.
func descendantsStopped(pid int) bool {
	for _, d := range descendants(pid) {
		state, _, ok := procStat(strconv.Itoa(d))
		if ok && state != "T" && state != "t" && state != "Z" && state != "X" { // exited ones count
			return false
		}
	}
	return true
}

// allStopped reports whether every task under dir (/proc/PID/task) is in
// state T (stopped). A missing dir is reported as stopped, with no error,
// when /proc is absent.
func allStopped(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if _, serr := os.Stat("/proc/self"); serr != nil {
			return true, nil
		}
		return false, fmt.Errorf("testservers: %v", err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		if err != nil {
			continue // the thread exited
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) {
			return false, fmt.Errorf("testservers: cannot read %s", filepath.Join(dir, e.Name(), "stat"))
		}
		if b[i+2] != 'T' {
			return false, nil
		}
	}
	return true, nil
}

// kill SIGKILLs the process group and reaps the server.
func (p *proc) kill() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = cmd.Process.Kill() // in case it left its process group
	<-exited
	waitGroupGone(pid, 2*time.Second)
	return nil
}

// stop asks the server to shut down and waits; it kills it after stopTimeout.
func (p *proc) stop() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(p.spec.stopSignal)
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGCONT) // a paused server handles the signal only once resumed
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = p.kill()
		return fmt.Errorf("testservers: %s on %s did not stop within %v; killed it%s", p.spec.name, p.addr(), stopTimeout, p.tailForError())
	}
	p.mu.Lock()
	if p.cmd == cmd {
		p.cmd = nil
	}
	p.mu.Unlock()
	waitGroupGone(cmd.Process.Pid, 2*time.Second)
	return nil
}

// restart stops a running server and starts it again on the same port. A
// start that fails because the old process's resources (the port,
// PostgreSQL's shared memory) are not yet released is retried.
func (p *proc) restart() error {
	if err := p.stop(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	for {
		err := p.startAndWait(ctx)
		var ee *earlyExitError
		if err == nil || !errors.As(err, &ee) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// close stops the server, closes its log and removes its directory.
func (p *proc) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	var err error
	if p.spec.closeByKill {
		err = p.kill()
	} else {
		err = p.stop()
	}
	p.mu.Lock()
	p.closed = true
	if p.logf != nil {
		p.logf.Close()
	}
	p.mu.Unlock()
	if p.root != "" {
		if rerr := os.RemoveAll(p.root); rerr != nil && err == nil {
			err = fmt.Errorf("testservers: %v", rerr)
		}
	}
	return err
}

// waitGroupGone waits (bounded) until no process of the group pgid is left,
// so that a restart does not race with dying children (PostgreSQL backends).
func waitGroupGone(pgid int, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *proc) logTail(n int) string {
	f, err := os.Open(p.logPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - int64(n)
	if off < 0 {
		off = 0
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return string(b)
}

func (p *proc) logSince(off int64) string {
	f, err := os.Open(p.logPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= off {
		return ""
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return string(b)
}

func (p *proc) tailForError() string {
	t := strings.TrimSpace(p.logTail(3000))
	if t == "" {
		return ""
	}
	return "\n--- tail of " + p.logPath() + " ---\n" + t
}

// ---- spawning with a stable parent thread ----

// Linux sends the parent-death signal when the thread that forked the child
// exits, not the process. Go may retire OS threads, so all servers are
// forked from a single goroutine locked to its thread for the life of the
// process; that thread exits only when the process does.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives forever
			for r := range spawnReqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnReqs <- r
	return <-r.done
}

// ---- ports, directories, users, binaries ----

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// freePort returns a port on 127.0.0.1 that was free a moment ago and has
// not been handed out before in this process.
func freePort() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("testservers: finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		used := portsUsed[port]
		portsUsed[port] = true
		portsMu.Unlock()
		if !used {
			return port, nil
		}
	}
	return 0, errors.New("testservers: no free port found")
}

// serverCredential returns the credential servers run with: nil (the
// current user) unless running as root, then the user "nobody".
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}
	return &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}, nil
}

// makeRoot creates the server's private directory, owned by the server user.
func makeRoot(name string, cred *syscall.Credential) (string, error) {
	base := os.TempDir()
	if (cred != nil && !traversableByOthers(base)) || len(base) > 64 {
		// Unix socket paths (PostgreSQL, MariaDB) are limited to 107 bytes.
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "testservers-"+name+"-")
	if err != nil {
		return "", fmt.Errorf("testservers: %v", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("testservers: %v", err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("testservers: %v", err)
	}
	return dir, nil
}

// traversableByOthers reports whether dir and all its ancestors can be
// searched by an unrelated user.
func traversableByOthers(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}

// mkdirOwned creates dir owned by the server user.
func (p *proc) mkdirOwned(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("testservers: %v", err)
	}
	if p.cred != nil {
		if err := os.Chown(dir, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			return fmt.Errorf("testservers: %v", err)
		}
	}
	return nil
}

// lookBinary finds the first of names on PATH or in dirs.
func lookBinary(names []string, dirs ...string) string {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				return abs
			}
			return p
		}
	}
	for _, d := range dirs {
		for _, n := range names {
			p := filepath.Join(d, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}
