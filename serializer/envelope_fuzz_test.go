package serializer_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/sessionstorage/sessions/serializer"
)

// envelopeErrors are the errors every failed decode or open must wrap.
var envelopeErrors = []error{
	serializer.ErrNotEnvelope, serializer.ErrVersion, serializer.ErrChecksum, serializer.ErrTruncated,
	serializer.ErrEncrypted, serializer.ErrPlaintext, serializer.ErrUnknownKey, serializer.ErrAuth,
}

func checkEnvelopeError(t *testing.T, err error) {
	t.Helper()
	for _, want := range envelopeErrors {
		if errors.Is(err, want) {
			return
		}
	}
	t.Fatalf("error %q (%T) wraps none of the package's errors", err, err)
}

var fuzzCastagnoli = crc32.MakeTable(crc32.Castagnoli)

// withChecksum replaces the last 4 bytes of data with the CRC-32C of the
// rest, so that the fuzzer gets past the checksum into the body.
func withChecksum(data []byte) []byte {
	if len(data) < 4 {
		return data
	}
	out := bytes.Clone(data)
	body := out[:len(out)-4]
	binary.BigEndian.PutUint32(out[len(body):], crc32.Checksum(body, fuzzCastagnoli))
	return out
}

func fuzzSample() *serializer.Envelope {
	return &serializer.Envelope{Codec: serializer.MsgpackID, Created: 1700000000000, LastAccess: 1700000001000, Expires: 1700001801000, Revision: 7,
		Values: []serializer.Field{{Key: "user", Value: []byte{0xa5, 'a', 'l', 'i', 'c', 'e'}}, {Key: "empty", Value: []byte{}}, {Key: "", Value: []byte{1, 2, 3}}}}
}

// envelopeSeeds are real encodings and the damaged ones envelope_test.go
// and seal_test.go know: truncated, flipped, wrong version, unknown flags,
// encrypted without a key, other formats.
func envelopeSeeds() [][]byte {
	data := fuzzSample().Marshal()
	flipped := bytes.Clone(data)
	flipped[10] ^= 1
	version := bytes.Clone(data)
	version[2] = 2
	return [][]byte{
		data,
		(&serializer.Envelope{}).Marshal(),
		(&serializer.Envelope{Codec: serializer.JSONID, Created: -1, LastAccess: 1 << 62, Revision: ^uint64(0)}).Marshal(),
		nil,
		[]byte(`{"user":"alice"}`),
		data[:2],
		data[:5],
		data[:len(data)-1],
		flipped,
		version,
		(&serializer.Envelope{Flags: 2}).Marshal(),
		(&serializer.Envelope{Flags: serializer.FlagEncrypted}).Marshal(),
		{0x53, 0xE5, 1, 1, 0, 0xff, 0xff},
	}
}

func sameEnvelope(a, b *serializer.Envelope) bool {
	if a.Codec != b.Codec || a.Flags != b.Flags || a.Created != b.Created || a.LastAccess != b.LastAccess ||
		a.Expires != b.Expires || a.Revision != b.Revision || len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		if a.Values[i].Key != b.Values[i].Key || !bytes.Equal(a.Values[i].Value, b.Values[i].Value) {
			return false
		}
	}
	return true
}

// checkDecoded asserts the properties of one decode: an error wrapping a
// package error, or an envelope that re-encodes to exactly data.
func checkDecoded(t *testing.T, data []byte) *serializer.Envelope {
	t.Helper()
	e, err := serializer.DecodeEnvelope(data)
	if err != nil {
		if e != nil {
			t.Fatalf("DecodeEnvelope returned an envelope and the error %v", err)
		}
		checkEnvelopeError(t, err)
		return nil
	}
	if again := e.Marshal(); !bytes.Equal(again, data) {
		t.Fatalf("decoded envelope re-encodes differently:\n in  %x\n out %x", data, again)
	}
	if e.Size() != len(data) {
		t.Fatalf("Size() = %d for a %d-byte encoding", e.Size(), len(data))
	}
	return e
}

// FuzzEnvelopeDecode: any bytes decode to an envelope that re-encodes to
// the same bytes, or fail with an error wrapping one of the package's
// errors; never a panic. fix rewrites the trailing checksum first so that
// the body's parser is reached.
func FuzzEnvelopeDecode(f *testing.F) {
	for _, s := range envelopeSeeds() {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			data = withChecksum(data)
		}
		checkDecoded(t, data)
	})
}

// FuzzEnvelopeRoundTrip: decode(encode(x)) == x for generated envelopes
// (values cut from one blob by a list of lengths), and the encoding has
// the length Size promises.
func FuzzEnvelopeRoundTrip(f *testing.F) {
	f.Add(serializer.MsgpackID, int64(1700000000000), int64(1700000001000), int64(1700001801000), uint64(7), []byte("user\x00\xa5alice\x00empty"), []byte{4, 6, 5, 0})
	f.Add(byte(0), int64(0), int64(0), int64(0), uint64(0), []byte(nil), []byte(nil))
	f.Add(byte(255), int64(-1), int64(-1<<63), int64(1<<63-1), ^uint64(0), []byte("k"), []byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, codec byte, created, last, expires int64, rev uint64, blob, lens []byte) {
		e := &serializer.Envelope{Codec: codec, Created: created, LastAccess: last, Expires: expires, Revision: rev}
		for len(lens) >= 2 {
			kl, vl := int(lens[0]), int(lens[1])
			lens = lens[2:]
			if kl > len(blob) {
				kl = len(blob)
			}
			k := string(blob[:kl])
			blob = blob[kl:]
			if vl > len(blob) {
				vl = len(blob)
			}
			e.Values = append(e.Values, serializer.Field{Key: k, Value: blob[:vl]})
			blob = blob[vl:]
		}
		data := e.Marshal()
		if len(data) != e.Size() {
			t.Fatalf("Size() = %d, encoded %d bytes", e.Size(), len(data))
		}
		got := checkDecoded(t, data)
		if got == nil {
			t.Fatalf("an envelope this package encoded does not decode")
		}
		if !sameEnvelope(got, e) {
			t.Fatalf("decode(encode(x)) = %+v, want %+v", got, e)
		}
	})
}

var (
	fuzzKeyNew = bytes.Repeat([]byte{0x42}, 32)
	fuzzKeyOld = bytes.Repeat([]byte{0x17}, 16)
)

// FuzzEnvelopeSealed: Open then decode either fails with an error wrapping
// one of the package's errors or yields an envelope that re-encodes to the
// opened bytes; a plain envelope sealed under any associated data opens
// back to the same bytes (and to the same envelope), and not under other
// associated data; never a panic.
func FuzzEnvelopeSealed(f *testing.F) {
	sealer, err := serializer.NewSealer(fuzzKeyNew, fuzzKeyOld)
	if err != nil {
		f.Fatal(err)
	}
	oldOnly, err := serializer.NewSealer(fuzzKeyOld)
	if err != nil {
		f.Fatal(err)
	}
	aad := []byte("sess:abc")
	for _, s := range envelopeSeeds() {
		f.Add(s, aad)
	}
	sealed := sealer.Seal(fuzzSample().Marshal(), aad)
	f.Add(sealed, aad)
	f.Add(sealed, []byte("sess:other"))
	f.Add(oldOnly.Seal(fuzzSample().Marshal(), aad), aad)
	f.Add(sealed[:len(sealed)-1], aad)
	f.Add(sealed[:21], aad)
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-3] ^= 0x80
	f.Add(tampered, aad)
	unknown := bytes.Clone(sealed)
	unknown[6] ^= 1
	f.Add(unknown, aad)
	f.Fuzz(func(t *testing.T, data, aad []byte) {
		// Arbitrary bytes through Open, then DecodeEnvelope.
		plain, err := sealer.Open(data, aad)
		if err != nil {
			if plain != nil {
				t.Fatalf("Open returned bytes and the error %v", err)
			}
			checkEnvelopeError(t, err)
		} else {
			checkDecoded(t, plain)
		}
		// The same bytes as a plain envelope: seal and open them back.
		e, err := serializer.DecodeEnvelope(data)
		if err != nil {
			return
		}
		s := sealer.Seal(data, aad)
		if _, err := serializer.DecodeEnvelope(s); !errors.Is(err, serializer.ErrEncrypted) {
			t.Fatalf("DecodeEnvelope of a sealed envelope: %v, want ErrEncrypted", err)
		}
		opened, err := sealer.Open(s, aad)
		if err != nil {
			t.Fatalf("Open(Seal(x)): %v", err)
		}
		if !bytes.Equal(opened, data) {
			t.Fatalf("Open(Seal(x)) = %x, want %x", opened, data)
		}
		if got := checkDecoded(t, opened); got == nil || !sameEnvelope(got, e) {
			t.Fatalf("sealed envelope decodes to %+v, want %+v", got, e)
		}
		if _, err := sealer.Open(s, append(bytes.Clone(aad), 0)); !errors.Is(err, serializer.ErrAuth) {
			t.Fatalf("Open under other associated data: %v, want ErrAuth", err)
		}
		if _, err := oldOnly.Open(s, aad); !errors.Is(err, serializer.ErrUnknownKey) {
			t.Fatalf("Open without the sealing key: %v, want ErrUnknownKey", err)
		}
	})
}
