package testservers_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sessionstorage/sessions/internal/testservers"
)

// redisPing sends PING on a new connection and waits up to d for PONG.
func redisPing(addr string, d time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return &net.AddrError{Err: "unexpected reply " + line, Addr: addr}
	}
	return nil
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := testservers.Redis(t)
	if err := redisPing(s.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s.Pause(t)
	// Paused: connections are accepted but nothing answers.
	err := redisPing(s.Addr(), 300*time.Millisecond)
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("PING to a paused server: %v, want a timeout", err)
	}
	s.Resume(t)
	if err := redisPing(s.Addr(), 5*time.Second); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	s.Resume(t) // not paused: nothing happens

	// A paused server stops at once (it is resumed to handle SIGTERM).
	s.Pause(t)
	start := time.Now()
	s.Stop(t)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Stop of a paused server took %v", d)
	}
	restart(t, s)
	if err := redisPing(s.Addr(), 5*time.Second); err != nil {
		t.Fatalf("PING after Stop and Restart: %v", err)
	}
	s.Pause(t) // left paused: the cleanup resumes it before Close
}
