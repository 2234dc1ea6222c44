package serializer

import (
	"bytes"
	"math"
	"reflect"
	"runtime"
	"testing"
	"time"
)

// A realistic session: 20 keys of strings, ints, a struct, a slice and a
// time, as a shop's login, preferences and cart.
type cartItem struct {
	SKU      string
	Quantity int
	Price    float64
}

type cart struct {
	Items    []cartItem
	Currency string
	Updated  time.Time
}

func realisticSession() map[string]any {
	at := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	return map[string]any{
		"user_id":     int64(48213),
		"user_name":   "alice.martin",
		"email":       "alice.martin@example.com",
		"role":        "customer",
		"locale":      "fr-FR",
		"theme":       "dark",
		"csrf":        "kJ8s0dQ2m1ZrN4pX7bC9vL5tY3wA6eH0",
		"login_at":    at,
		"last_page":   "/products/espresso-machines?page=2",
		"visits":      int64(17),
		"cart":        cart{Items: []cartItem{{"ESP-100", 1, 349.9}, {"BEAN-1KG", 3, 18.5}}, Currency: "EUR", Updated: at},
		"viewed":      []string{"ESP-100", "ESP-200", "GRD-30", "BEAN-1KG", "MUG-2"},
		"flash":       "Added to cart",
		"ab_bucket":   int64(3),
		"tz":          "Europe/Paris",
		"newsletter":  "yes",
		"coupon":      "WINTER26",
		"referrer":    "https://search.example/?q=espresso",
		"device":      "desktop",
		"consent_ver": int64(4),
	}
}

func TestCodecsRoundTripTyped(t *testing.T) {
	for _, c := range []Codec{Msgpack, JSON, Gob} {
		for k, v := range realisticSession() {
			data, err := c.Marshal(v)
			if err != nil {
				t.Fatalf("%s: Marshal(%s): %v", c.Name(), k, err)
			}
			ptr := reflect.New(reflect.TypeOf(v))
			if err := c.Unmarshal(data, ptr.Interface()); err != nil {
				t.Fatalf("%s: Unmarshal(%s): %v", c.Name(), k, err)
			}
			got := ptr.Elem().Interface()
			if tm, ok := v.(time.Time); ok {
				if !got.(time.Time).Equal(tm) {
					t.Errorf("%s: %s = %v, want %v", c.Name(), k, got, v)
				}
				continue
			}
			if cv, ok := v.(cart); ok {
				gc := got.(cart)
				if !gc.Updated.Equal(cv.Updated) || !reflect.DeepEqual(gc.Items, cv.Items) {
					t.Errorf("%s: cart = %+v, want %+v", c.Name(), gc, cv)
				}
				continue
			}
			if !reflect.DeepEqual(got, v) {
				t.Errorf("%s: %s = %#v, want %#v", c.Name(), k, got, v)
			}
		}
	}
}

func TestUntypedDecoding(t *testing.T) {
	data, _ := Msgpack.Marshal(42)
	var v any
	if err := Msgpack.Unmarshal(data, &v); err != nil || v != int64(42) {
		t.Fatalf("msgpack untyped int = %#v, %v; want int64(42)", v, err)
	}
	data, _ = Gob.Marshal(42)
	if err := Gob.Unmarshal(data, &v); err == nil {
		t.Fatal("gob cannot decode untyped; want an error")
	}
}

func TestByID(t *testing.T) {
	for _, c := range []Codec{Msgpack, JSON, Gob} {
		if got, ok := ByID(c.ID()); !ok || got.Name() != c.Name() {
			t.Errorf("ByID(%d) = %v", c.ID(), got)
		}
	}
	if _, ok := ByID(200); ok {
		t.Error("ByID(200) found a codec")
	}
}

// BenchmarkCodec encodes and decodes the realistic session one value at a
// time, as the library does (values are encoded at Set, decoded at Get[T]).
func BenchmarkCodec(b *testing.B) {
	sess := realisticSession()
	for _, c := range []Codec{Msgpack, JSON, Gob} {
		b.Run(c.Name(), func(b *testing.B) {
			size := 0
			for _, v := range sess {
				d, _ := c.Marshal(v)
				size += len(d)
			}
			b.ReportMetric(float64(size), "bytes/session")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for _, v := range sess {
					data, err := c.Marshal(v)
					if err != nil {
						b.Fatal(err)
					}
					ptr := reflect.New(reflect.TypeOf(v))
					if err := c.Unmarshal(data, ptr.Interface()); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// The scalar fast path must decode exactly as the reflective encoder's
// output does, for every size class.
func TestMsgpackScalarFastPath(t *testing.T) {
	long := func(n int) string { return string(bytes.Repeat([]byte{'x'}, n)) }
	values := []any{"", "a", long(31), long(32), long(255), long(256), long(65535), long(65536),
		0, 1, 127, 128, -1, -32, -33, -128, -129, 255, 256, 32767, 32768, -32768, -32769,
		1 << 31, -1 << 31, int64(1) << 40, int64(-1) << 40, int64(math.MaxInt64), int64(math.MinInt64),
		int32(-7), true, false, 3.25, -0.5, nil}
	for _, v := range values {
		fast, ok := appendMsgpackScalar(nil, v)
		if !ok {
			t.Fatalf("%T has no fast path", v)
		}
		ptr := reflect.New(reflect.TypeOf(&v).Elem())
		if v != nil {
			ptr = reflect.New(reflect.TypeOf(v))
		}
		if err := Msgpack.Unmarshal(fast, ptr.Interface()); err != nil {
			t.Fatalf("%#v: fast encoding does not decode: %v", v, err)
		}
		if got := ptr.Elem().Interface(); v != nil && got != v {
			t.Errorf("%#v round-trips as %#v", v, got)
		}
		var untyped any
		if err := Msgpack.Unmarshal(fast, &untyped); err != nil {
			t.Fatalf("%#v: untyped decode: %v", v, err)
		}
		want := v
		switch x := v.(type) {
		case int:
			want = int64(x)
		case int32:
			want = int64(x)
		}
		if !reflect.DeepEqual(untyped, want) {
			t.Errorf("%#v decodes untyped as %#v, want %#v", v, untyped, want)
		}
	}
}

// A stored value that declares a length far beyond its bytes (a string,
// binary, extension, array or map of gigabytes in a dozen bytes) is an
// error, found without allocating what it declares.
func TestMsgpackDeclaredLengthBeyondData(t *testing.T) {
	c, _ := ByID(MsgpackID)
	for _, data := range [][]byte{
		[]byte("\xdb=E\xcb\xeeu\xdefffff"),              // str32 of ~1 GB
		[]byte("\xc6\xff\x9b\xfa\x00\x89@\xff\xff\xff"), // bin32 of ~4 GB
		{0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00},      // ext32
		{0xdd, 0xff, 0xff, 0xff, 0xff, 0x00},            // array32
		{0xdf, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00},      // map32
		{0x91, 0xdb, 0x7f, 0xff, 0xff, 0xff},            // nested
	} {
		for _, target := range []any{new(string), new([]byte), new(any), new(map[string]any), new([]string)} {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := c.Unmarshal(data, target)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Errorf("% x into %T decoded", data, target)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("% x into %T allocated %d bytes before failing", data, target, grew)
			}
		}
	}
}
