package serializer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

func TestSealerRoundTripRotationAndTampering(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)
	plain := sample().Marshal()
	aad := []byte("sess:key-a")

	before, err := NewSealer(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	sealedOld := before.Seal(plain, aad)
	if bytes.Contains(sealedOld, []byte("alice")) {
		t.Fatal("sealed envelope shows a value in clear")
	}
	if _, err := DecodeEnvelope(sealedOld); !errors.Is(err, ErrEncrypted) {
		t.Fatalf("DecodeEnvelope of a sealed envelope: %v, want ErrEncrypted", err)
	}

	after, err := NewSealer(newKey, oldKey) // rotation: new key first
	if err != nil {
		t.Fatal(err)
	}
	for name, sealed := range map[string][]byte{"old key": sealedOld, "new key": after.Seal(plain, aad)} {
		got, err := after.Open(sealed, aad)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s: Open = %v; want the plain envelope back", name, err)
		}
	}
	if _, err := before.Open(after.Seal(plain, aad), aad); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("open with a sealer lacking the key: %v, want ErrUnknownKey", err)
	}
	if _, err := after.Open(sealedOld, []byte("sess:key-b")); !errors.Is(err, ErrAuth) {
		t.Fatalf("entry moved to another key: %v, want ErrAuth", err)
	}
	tampered := bytes.Clone(sealedOld)
	tampered[len(tampered)-1] ^= 1
	if _, err := after.Open(tampered, aad); !errors.Is(err, ErrAuth) {
		t.Fatalf("tampered entry: %v, want ErrAuth", err)
	}
	if _, err := after.Open(plain, aad); !errors.Is(err, ErrPlaintext) {
		t.Fatalf("plain entry: %v, want ErrPlaintext", err)
	}
	if _, err := after.Open(sealedOld[:10], aad); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated entry: %v, want ErrTruncated", err)
	}
	if _, err := NewSealer([]byte("short")); err == nil {
		t.Fatal("a 5-byte key was accepted")
	}
	if _, err := NewSealer(oldKey, oldKey); err == nil {
		t.Fatal("a repeated key was accepted")
	}
}

// An entry sealed by the earlier format (AES-GCM, 12-byte nonce; stored in
// testdata when that format was current) still opens, and re-sealing it
// writes the current format (XChaCha20-Poly1305).
func TestOpensTheEarlierAESGCMFormat(t *testing.T) {
	raw, err := os.ReadFile("testdata/sealed-aes-gcm.hex")
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if sealed[4] != FlagEncrypted {
		t.Fatalf("the stored entry's flags are %#x; it is not the earlier format", sealed[4])
	}
	key := []byte("0123456789abcdef0123456789abcdef")
	s, err := NewSealer([]byte("another key of 32 bytes, first.."), key)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := s.Open(sealed, []byte("sess:storage-key"))
	if err != nil {
		t.Fatalf("Open of an AES-GCM entry: %v", err)
	}
	env, err := DecodeEnvelope(plain)
	if err != nil {
		t.Fatal(err)
	}
	if env.Revision != 3 || len(env.Values) != 1 || env.Values[0].Key != "user" || string(env.Values[0].Value[1:]) != "alice" {
		t.Fatalf("opened %+v", env)
	}
	if _, err := s.Open(sealed, []byte("sess:other-key")); !errors.Is(err, ErrAuth) {
		t.Fatalf("opened under another storage key: %v, want ErrAuth", err)
	}
	resealed := s.Seal(plain, []byte("sess:storage-key"))
	if resealed[4] != FlagEncrypted|FlagXChaCha {
		t.Fatalf("Seal wrote flags %#x, want FlagEncrypted|FlagXChaCha", resealed[4])
	}
	if len(resealed) != len(plain)+keyIDLen+chacha20poly1305.NonceSizeX+chacha20poly1305.Overhead {
		t.Fatalf("sealed length %d for a %d-byte envelope", len(resealed), len(plain))
	}
}

// Every sealed entry gets its own 192-bit nonce: no two of many seals of
// one envelope share a nonce or a ciphertext.
func TestSealNoncesAreFresh(t *testing.T) {
	s, err := NewSealer([]byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	env := (&Envelope{Codec: MsgpackID, Revision: 1}).Marshal()
	seen := map[string]bool{}
	for range 10000 {
		out := s.Seal(env, nil)
		nonce := string(out[headerLen+keyIDLen : headerLen+keyIDLen+chacha20poly1305.NonceSizeX])
		if seen[nonce] {
			t.Fatal("a nonce repeated")
		}
		seen[nonce] = true
	}
}

// BenchmarkSeal compares the current format with the earlier one on a
// 1 KiB envelope (seal plus open).
func BenchmarkSeal(b *testing.B) {
	s, _ := NewSealer([]byte("0123456789abcdef0123456789abcdef"))
	env := (&Envelope{Codec: MsgpackID, Revision: 1, Values: []Field{{Key: "k", Value: make([]byte, 1024)}}}).Marshal()
	aad := []byte("sess:key")
	b.Run("xchacha20poly1305", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Open(s.Seal(env, aad), aad); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("aes-gcm(earlier)", func(b *testing.B) {
		k := s.keys[0]
		for b.Loop() {
			out := append([]byte(nil), env[:headerLen]...)
			out[4] |= FlagEncrypted
			out = append(out, k.id[:]...)
			nonce := make([]byte, 12)
			rand.Read(nonce)
			out = append(out, nonce...)
			out = k.gcm.Seal(out, nonce, env[headerLen:], append(append([]byte(nil), out[:headerLen]...), aad...))
			if _, err := s.Open(out, aad); err != nil {
				b.Fatal(err)
			}
		}
	})
}
