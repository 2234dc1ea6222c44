package serializer_test

import (
	"bytes"
	"math"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/sessionstorage/sessions/serializer"
)

var fuzzCodecs = []serializer.Codec{serializer.Msgpack, serializer.JSON, serializer.Gob}

type fuzzItem struct {
	SKU      string
	Quantity int
	Price    float64
}

type fuzzValue struct {
	Name  string
	N     int64
	U     uint64
	Small int32
	F     float64
	On    bool
	Raw   []byte
	Tags  []string
	Items []fuzzItem
	Attrs map[string]int
}

func sameFuzzValue(a, b fuzzValue) bool {
	if a.Name != b.Name || a.N != b.N || a.U != b.U || a.Small != b.Small || a.On != b.On ||
		math.Float64bits(a.F) != math.Float64bits(b.F) || !bytes.Equal(a.Raw, b.Raw) ||
		len(a.Tags) != len(b.Tags) || len(a.Items) != len(b.Items) || len(a.Attrs) != len(b.Attrs) {
		return false
	}
	return (len(a.Tags) == 0 || reflect.DeepEqual(a.Tags, b.Tags)) &&
		(len(a.Items) == 0 || reflect.DeepEqual(a.Items, b.Items)) &&
		(len(a.Attrs) == 0 || reflect.DeepEqual(a.Attrs, b.Attrs))
}

// roundTrip encodes v with c and decodes it into a new value of v's type.
func roundTrip[T any](t *testing.T, c serializer.Codec, v T) T {
	t.Helper()
	data, err := c.Marshal(v)
	if err != nil {
		t.Fatalf("%s: Marshal(%#v): %v", c.Name(), v, err)
	}
	var got T
	if err := c.Unmarshal(data, &got); err != nil {
		t.Fatalf("%s: Unmarshal of Marshal(%#v) = %x: %v", c.Name(), v, data, err)
	}
	return got
}

// FuzzCodecRoundTrip: for every codec, decoding a value's encoding into its
// own type (what sessions.Get[T] does) gives the value back: the scalars
// msgpack encodes on its fast path and a struct of slices, maps and nested
// structs. JSON is given valid UTF-8 and finite floats only (it replaces
// the one and rejects the other by design).
func FuzzCodecRoundTrip(f *testing.F) {
	f.Add("alice.martin", int64(48213), uint64(3), int32(-7), 349.9, true, []byte("raw"), "ESP-100")
	f.Add("", int64(0), uint64(0), int32(0), 0.0, false, []byte(nil), "")
	f.Add(string(bytes.Repeat([]byte("x"), 70000)), int64(math.MinInt64), uint64(math.MaxUint64), int32(math.MinInt32), math.Inf(-1), true, []byte{}, "\xff")
	f.Add("31 bytes long string, 31 bytes.", int64(-33), uint64(1<<32), int32(math.MaxInt32), math.SmallestNonzeroFloat64, false, bytes.Repeat([]byte{0}, 256), "k")
	f.Add("x", int64(128), uint64(255), int32(-129), math.NaN(), true, []byte{1}, "a")
	f.Fuzz(func(t *testing.T, s string, n int64, u uint64, small int32, fl float64, on bool, raw []byte, tag string) {
		v := fuzzValue{Name: s, N: n, U: u, Small: small, F: fl, On: on, Raw: raw,
			Tags: []string{tag, s}, Items: []fuzzItem{{SKU: tag, Quantity: int(n), Price: fl}}, Attrs: map[string]int{tag: int(small)}}
		for _, c := range fuzzCodecs {
			json := c.ID() == serializer.JSONID
			finite := !math.IsNaN(fl) && !math.IsInf(fl, 0)
			if json && (!utf8.ValidString(s) || !utf8.ValidString(tag) || !finite) {
				continue
			}
			if got := roundTrip(t, c, s); got != s {
				t.Fatalf("%s: string %q came back as %q", c.Name(), s, got)
			}
			if got := roundTrip(t, c, n); got != n {
				t.Fatalf("%s: int64 %d came back as %d", c.Name(), n, got)
			}
			if got := roundTrip(t, c, int(n)); got != int(n) {
				t.Fatalf("%s: int %d came back as %d", c.Name(), n, got)
			}
			if got := roundTrip(t, c, small); got != small {
				t.Fatalf("%s: int32 %d came back as %d", c.Name(), small, got)
			}
			if got := roundTrip(t, c, u); got != u {
				t.Fatalf("%s: uint64 %d came back as %d", c.Name(), u, got)
			}
			if got := roundTrip(t, c, on); got != on {
				t.Fatalf("%s: bool %v came back as %v", c.Name(), on, got)
			}
			if got := roundTrip(t, c, fl); math.Float64bits(got) != math.Float64bits(fl) && !(math.IsNaN(fl) && math.IsNaN(got)) {
				t.Fatalf("%s: float64 %v came back as %v", c.Name(), fl, got)
			}
			if got := roundTrip(t, c, raw); !bytes.Equal(got, raw) {
				t.Fatalf("%s: []byte %x came back as %x", c.Name(), raw, got)
			}
			if !finite {
				continue // NaN != NaN in the struct compare below
			}
			if got := roundTrip(t, c, v); !sameFuzzValue(got, v) {
				t.Fatalf("%s: struct %#v came back as %#v", c.Name(), v, got)
			}
		}
	})
}

// FuzzCodecDecode: arbitrary stored bytes decoding into the targets
// sessions.Get[T] uses (scalars, slices, maps, structs, any) return a value
// or an error; they never panic, whatever the codec.
func FuzzCodecDecode(f *testing.F) {
	for _, c := range fuzzCodecs {
		for _, v := range []any{"alice", int64(48213), 349.9, true, []byte("raw"), []string{"a", "b"},
			map[string]any{"k": "v"}, fuzzValue{Name: "n", Tags: []string{"t"}, Items: []fuzzItem{{"ESP", 1, 2.5}}, Attrs: map[string]int{"a": 1}}} {
			if data, err := c.Marshal(v); err == nil {
				f.Add(c.ID(), data)
				if len(data) > 1 {
					f.Add(c.ID(), data[:len(data)-1])
				}
			}
		}
	}
	f.Add(serializer.MsgpackID, []byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add(serializer.MsgpackID, []byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add(serializer.MsgpackID, []byte{0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Add(serializer.JSONID, []byte(`{"Name":`))
	f.Add(serializer.GobID, []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, id byte, data []byte) {
		c, ok := serializer.ByID(id%3 + 1)
		if !ok {
			t.Fatalf("codec %d missing", id%3+1)
		}
		var (
			s  string
			n  int64
			i  int
			fl float64
			b  []byte
			ss []string
			m  map[string]any
			st fuzzValue
			a  any
		)
		for _, target := range []any{&s, &n, &i, &fl, &b, &ss, &m, &st, &a} {
			_ = c.Unmarshal(data, target)
		}
	})
}
