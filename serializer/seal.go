package serializer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// FlagEncrypted marks an envelope whose body (everything after the 5-byte
// header) is sealed with AES-GCM by a Sealer.
const FlagEncrypted byte = 0x01

// Errors of encrypted envelopes.
var (
	ErrEncrypted  = errors.New("serializer: envelope is encrypted and no key is configured")
	ErrPlaintext  = errors.New("serializer: envelope is not encrypted but encryption keys are configured")
	ErrUnknownKey = errors.New("serializer: envelope encrypted with a key that is not configured")
	ErrAuth       = errors.New("serializer: envelope failed authentication (tampered, or moved from another storage key)")
)

// Sealer encrypts and authenticates envelopes at rest with AES-GCM, for
// storages that are a trust boundary (a shared cache: memcached has no
// authentication). The first key seals; every key opens, so keys can be
// rotated: add the new key first, keep the old ones until their entries
// have expired. It is safe for concurrent use.
//
// Sealed layout: the plain header with FlagEncrypted set, a 4-byte key id
// (the first bytes of the key's SHA-256), a 12-byte random nonce, then the
// AES-GCM ciphertext of the rest of the envelope. The header and the
// caller's associated data (the library passes the storage key) are
// authenticated, so an entry copied under another key does not open.
type Sealer struct {
	keys []sealKey
}

type sealKey struct {
	id   [4]byte
	aead cipher.AEAD
}

const (
	keyIDLen = 4
	nonceLen = 12
)

// NewSealer returns a Sealer for the given AES keys (16, 24 or 32 bytes
// each); the first one seals.
func NewSealer(keys ...[]byte) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("serializer: NewSealer needs at least one key")
	}
	s := &Sealer{}
	for i, k := range keys {
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("serializer: encryption key %d: %w (want 16, 24 or 32 bytes)", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(k)
		sk := sealKey{aead: aead}
		copy(sk.id[:], sum[:keyIDLen])
		for _, prev := range s.keys {
			if prev.id == sk.id {
				return nil, fmt.Errorf("serializer: encryption key %d repeats an earlier key", i+1)
			}
		}
		s.keys = append(s.keys, sk)
	}
	return s, nil
}

// Seal encrypts an envelope made by Envelope.Marshal, binding it to aad.
func (s *Sealer) Seal(envelope, aad []byte) []byte {
	k := s.keys[0]
	out := make([]byte, 0, headerLen+keyIDLen+nonceLen+len(envelope)-headerLen+k.aead.Overhead())
	out = append(out, envelope[:headerLen]...)
	out[4] |= FlagEncrypted
	out = append(out, k.id[:]...)
	nonce := out[len(out) : len(out)+nonceLen]
	rand.Read(nonce)
	out = out[:len(out)+nonceLen]
	return k.aead.Seal(out, nonce, envelope[headerLen:], append(out[:headerLen:headerLen], aad...))
}

// Open reverses Seal and returns the plain envelope. It fails with
// ErrPlaintext for an envelope that is not encrypted, ErrUnknownKey,
// ErrAuth, or the errors of DecodeEnvelope for what is not an envelope.
func (s *Sealer) Open(data, aad []byte) ([]byte, error) {
	if err := checkHeader(data); err != nil {
		return nil, err
	}
	if data[4]&FlagEncrypted == 0 {
		return nil, ErrPlaintext
	}
	if len(data) < headerLen+keyIDLen+nonceLen {
		return nil, ErrTruncated
	}
	id := data[headerLen : headerLen+keyIDLen]
	for _, k := range s.keys {
		if string(k.id[:]) != string(id) {
			continue
		}
		nonce := data[headerLen+keyIDLen : headerLen+keyIDLen+nonceLen]
		header := append([]byte(nil), data[:headerLen]...)
		plain, err := k.aead.Open(nil, nonce, data[headerLen+keyIDLen+nonceLen:], append(header, aad...))
		if err != nil {
			return nil, ErrAuth
		}
		header[4] &^= FlagEncrypted
		return append(header, plain...), nil
	}
	return nil, ErrUnknownKey
}

// checkHeader validates magic and version.
func checkHeader(data []byte) error {
	if len(data) < 2 || data[0] != magic0 || data[1] != magic1 {
		return ErrNotEnvelope
	}
	if len(data) < headerLen {
		return ErrTruncated
	}
	if data[2] != FormatVersion {
		return fmt.Errorf("%w: %d (this program reads %d)", ErrVersion, data[2], FormatVersion)
	}
	return nil
}
