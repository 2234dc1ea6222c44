package serializer

import (
	"bytes"
	"errors"
	"testing"
)

func sample() *Envelope {
	return &Envelope{Codec: MsgpackID, Created: 1700000000000, LastAccess: 1700000001000, Expires: 1700001801000, Revision: 7,
		Values: []Field{{"user", []byte{0xa5, 'a', 'l', 'i', 'c', 'e'}}, {"empty", []byte{}}, {"", []byte{1, 2, 3}}}}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := sample()
	data := e.Marshal()
	if len(data) != e.Size() {
		t.Fatalf("Size() = %d, encoded %d bytes", e.Size(), len(data))
	}
	got, err := DecodeEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Codec != e.Codec || got.Created != e.Created || got.LastAccess != e.LastAccess || got.Expires != e.Expires || got.Revision != e.Revision {
		t.Fatalf("metadata %+v, want %+v", got, e)
	}
	if len(got.Values) != len(e.Values) {
		t.Fatalf("%d values, want %d", len(got.Values), len(e.Values))
	}
	for i, f := range e.Values {
		if got.Values[i].Key != f.Key || !bytes.Equal(got.Values[i].Value, f.Value) {
			t.Errorf("value %d = %+v, want %+v", i, got.Values[i], f)
		}
	}
}

func TestEnvelopeRejectsDamage(t *testing.T) {
	data := sample().Marshal()
	flipped := bytes.Clone(data)
	flipped[10] ^= 1
	version := bytes.Clone(data)
	version[2] = 2
	flags := (&Envelope{Flags: 2}).Marshal()
	for name, tc := range map[string]struct {
		data []byte
		want error
	}{
		"empty":        {nil, ErrNotEnvelope},
		"other format": {[]byte(`{"user":"alice"}`), ErrNotEnvelope},
		"magic only":   {data[:2], ErrTruncated},
		"encrypted":    {(&Envelope{Flags: FlagEncrypted}).Marshal(), ErrEncrypted},
		"truncated":    {data[:len(data)-1], ErrChecksum},
		"header only":  {data[:5], ErrTruncated},
		"bit flip":     {flipped, ErrChecksum},
		"version":      {version, ErrVersion},
		"flags":        {flags, ErrVersion},
	} {
		if _, err := DecodeEnvelope(tc.data); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

// FuzzDecodeEnvelope: whatever the bytes, decoding returns an error or an
// envelope that re-encodes to the same bytes; it never panics.
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(sample().Marshal())
	f.Add((&Envelope{}).Marshal())
	f.Add([]byte{0x53, 0xE5, 1, 1, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEnvelope(data)
		if err != nil {
			return
		}
		if again := e.Marshal(); !bytes.Equal(again, data) {
			t.Fatalf("decoded envelope re-encodes differently")
		}
	})
}
