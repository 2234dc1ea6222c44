package serializer

import (
	"bytes"
	"errors"
	"testing"
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
