package serializer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// FlagEncrypted marks an envelope whose body (everything after the 5-byte
// header) is sealed by a Sealer; with FlagXChaCha too (the format Seal
// writes) with XChaCha20-Poly1305, without it with AES-GCM (the earlier
// format, which Open still reads).
const FlagEncrypted byte = 0x01

// FlagXChaCha marks, with FlagEncrypted, an envelope sealed with
// XChaCha20-Poly1305 and a 24-byte random nonce.
const FlagXChaCha byte = 0x02

// Errors of encrypted envelopes.
var (
	ErrEncrypted  = errors.New("serializer: envelope is encrypted and no key is configured")
	ErrPlaintext  = errors.New("serializer: envelope is not encrypted but encryption keys are configured")
	ErrUnknownKey = errors.New("serializer: envelope encrypted with a key that is not configured")
	ErrAuth       = errors.New("serializer: envelope failed authentication (tampered, or moved from another storage key)")
)

// Sealer encrypts and authenticates envelopes at rest, for storages that
// are a trust boundary (a shared cache: memcached has no authentication).
// The first key seals; every key opens, so keys can be rotated: add the new
// key first, keep the old ones until their entries have expired. It is
// safe for concurrent use.
//
// Seal uses XChaCha20-Poly1305 with a random 192-bit nonce, under a
// 256-bit key derived from the configured one (HKDF-SHA-256): random
// nonces of that size never collide in practice, so one key may seal any
// number of entries (AES-GCM's 96-bit random nonces allow about 2^32 per
// key). Open also reads entries sealed with AES-GCM under the key itself,
// the earlier format.
//
// Sealed layout: the plain header with FlagEncrypted (and FlagXChaCha)
// set, a 4-byte key id (the first bytes of the key's SHA-256), the nonce
// (24 bytes; 12 for AES-GCM), then the ciphertext of the rest of the
// envelope. The header and the caller's associated data (the library
// passes the storage key) are authenticated, so an entry copied under
// another key does not open.
type Sealer struct {
	keys []sealKey
}

type sealKey struct {
	id      [4]byte
	xchaCha cipher.AEAD // seals and opens the current format
	gcm     cipher.AEAD // opens the earlier format
}

const (
	keyIDLen = 4
)

// xchaChaInfo separates the derived sealing key from any other use of the
// configured key.
const xchaChaInfo = "github.com/sessionstorage/sessions envelope XChaCha20-Poly1305 key"

// NewSealer returns a Sealer for the given keys (16, 24 or 32 random bytes
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
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		derived, err := hkdf.Key(sha256.New, k, nil, xchaChaInfo, chacha20poly1305.KeySize)
		if err != nil {
			return nil, err
		}
		xc, err := chacha20poly1305.NewX(derived)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(k)
		sk := sealKey{xchaCha: xc, gcm: gcm}
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
	nonceLen := k.xchaCha.NonceSize()
	out := make([]byte, 0, headerLen+keyIDLen+nonceLen+len(envelope)-headerLen+k.xchaCha.Overhead())
	out = append(out, envelope[:headerLen]...)
	out[4] |= FlagEncrypted | FlagXChaCha
	out = append(out, k.id[:]...)
	nonce := out[len(out) : len(out)+nonceLen]
	rand.Read(nonce)
	out = out[:len(out)+nonceLen]
	return k.xchaCha.Seal(out, nonce, envelope[headerLen:], append(out[:headerLen:headerLen], aad...))
}

// Open reverses Seal (and reads the earlier AES-GCM format) and returns
// the plain envelope. It fails with ErrPlaintext for an envelope that is
// not encrypted, ErrUnknownKey, ErrAuth, or the errors of DecodeEnvelope
// for what is not an envelope.
func (s *Sealer) Open(data, aad []byte) ([]byte, error) {
	if err := checkHeader(data); err != nil {
		return nil, err
	}
	if data[4]&FlagEncrypted == 0 {
		return nil, ErrPlaintext
	}
	if len(data) < headerLen+keyIDLen {
		return nil, ErrTruncated
	}
	id := data[headerLen : headerLen+keyIDLen]
	for _, k := range s.keys {
		if string(k.id[:]) != string(id) {
			continue
		}
		aead := k.gcm
		if data[4]&FlagXChaCha != 0 {
			aead = k.xchaCha
		}
		nonceEnd := headerLen + keyIDLen + aead.NonceSize()
		if len(data) < nonceEnd {
			return nil, ErrTruncated
		}
		header := append([]byte(nil), data[:headerLen]...)
		plain, err := aead.Open(nil, data[headerLen+keyIDLen:nonceEnd], data[nonceEnd:], append(header, aad...))
		if err != nil {
			return nil, ErrAuth
		}
		header[4] &^= FlagEncrypted | FlagXChaCha
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
