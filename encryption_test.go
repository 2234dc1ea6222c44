package sessions_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/sessionstorage/sessions/internal/adapter"

	"github.com/sessionstorage/sessions"
)

func TestEncryptionAtRest(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32)
	for _, cluster := range []bool{false, true} {
		b := newBackend(t)
		n1 := newNode(t, b, sessions.Config{Cluster: cluster, EncryptionKeys: [][]byte{oldKey}})
		c := newClient(t)
		c.must(n1.h, "/set?k=card&v=4111-1111-1111-1111", 200)
		n1.close(t)
		raw, err := b.mem.Get(context.Background(), adapter.Key("sess:", c.cookie))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw.([]byte), []byte("4111")) {
			t.Fatalf("cluster=%v: the stored entry shows the value in clear", cluster)
		}
		// Rotation: the new key first, the old one still opens old entries.
		n2 := newNode(t, b, sessions.Config{Cluster: cluster, EncryptionKeys: [][]byte{newKey, oldKey}})
		if got := c.must(n2.h, "/get?k=card", 200); got != "4111-1111-1111-1111" {
			t.Fatalf("cluster=%v: after key rotation: %q", cluster, got)
		}
		// A server without the key cannot read it, and says why.
		n3 := newNode(t, b, sessions.Config{Cluster: cluster})
		stale := &client{t: t, name: "session", cookie: c.cookie}
		stale.must(n3.h, "/get?k=card", http.StatusNotFound)
		if !strings.Contains(n3.logs.String(), "encrypted and no key is configured") || n3.m.Stats().CorruptEntries != 1 {
			t.Fatalf("cluster=%v: reading without the key was not logged and counted:\n%s", cluster, n3.logs)
		}
	}
}

func TestEncryptedEntryCopiedToAnotherKeyDoesNotOpen(t *testing.T) {
	key := bytes.Repeat([]byte{3}, 16)
	b := newBackend(t)
	n := newNode(t, b, sessions.Config{EncryptionKeys: [][]byte{key}, Cluster: true})
	victim, attacker := newClient(t), newClient(t)
	victim.must(n.h, "/set?k=user&v=admin", 200)
	attacker.must(n.h, "/set?k=user&v=guest", 200)
	// Someone with write access to the cache copies the victim's entry
	// under the attacker's key.
	ctx := context.Background()
	raw, _ := b.mem.Get(ctx, adapter.Key("sess:", victim.cookie))
	must(t, b.mem.Set(ctx, adapter.Key("sess:", attacker.cookie), raw))
	attacker.must(n.h, "/get?k=user", http.StatusNotFound)
	if !strings.Contains(n.logs.String(), "failed authentication") {
		t.Fatalf("the moved entry was not rejected as such:\n%s", n.logs)
	}
}

func TestEncryptionKeyErrors(t *testing.T) {
	if _, err := sessions.New(sessions.Config{EncryptionKeys: [][]byte{[]byte("too short")}}); err == nil ||
		!strings.Contains(err.Error(), "EncryptionKeys") {
		t.Fatalf("a 9-byte key: %v", err)
	}
	cfg, err := sessions.ParseConfig(`encryption_keys = ["AAAAAAAAAAAAAAAAAAAAAA==", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"]`)
	if err != nil || len(cfg.EncryptionKeys) != 2 || len(cfg.EncryptionKeys[0]) != 16 || len(cfg.EncryptionKeys[1]) != 32 {
		t.Fatalf("keys from a config file: %v, %d keys", err, len(cfg.EncryptionKeys))
	}
	if _, err := sessions.ParseConfig(`encryption_keys = ["not base64!"]`); err == nil || !strings.Contains(err.Error(), "encryption_keys[0]") {
		t.Fatalf("bad key in config: %v", err)
	}
}
