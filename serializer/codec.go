// Package serializer turns session values into bytes and sessions into the
// self-describing envelope the library writes to storage.
//
// Each value of a session is encoded on its own by a Codec, when it is Set.
// That is what lets the library reject an unserializable value at Set time,
// decode lazily into the caller's type, and know which keys a request
// changed. The envelope (see Envelope) wraps those encoded values with the
// session's metadata, a format version, the codec's id and a checksum.
package serializer

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec encodes single session values.
//
// A Codec must be safe for concurrent use. Marshal must not retain v;
// Unmarshal must not retain data after it returns (the library may reuse
// the buffer). ID is stored in every envelope: it must never change for a
// codec, and two codecs in one program must not share one.
type Codec interface {
	// ID is the codec's stable one-byte identifier (1-15 are reserved
	// for the library's codecs).
	ID() byte
	// Name is a short human-readable name, such as "msgpack".
	Name() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into the value v points to. When v is a
	// *any, the codec picks the Go types (see each codec's doc).
	Unmarshal(data []byte, v any) error
}

// Codec ids written into envelopes.
const (
	MsgpackID byte = 1
	JSONID    byte = 2
	GobID     byte = 3
)

// Msgpack is the default codec: github.com/vmihailenco/msgpack/v5. It is the
// fastest of the three on a realistic session (BenchmarkCodec in codec_test.go) and
// the most compact. Decoding into *any gives int64 for Go's signed integers
// (uint64 for unsigned ones), float64, string, []byte, []any,
// map[string]any and time.Time.
var Msgpack Codec = msgpackCodec{}

// JSON encodes with encoding/json. Readable in storage tools, but larger and
// slower; decoding into *any follows encoding/json (numbers become float64),
// so prefer the typed sessions.Get[T].
var JSON Codec = jsonCodec{}

// Gob encodes with encoding/gob, each value as its own stream, so it needs
// no gob.Register for values read back with sessions.Get[T]. Decoding into
// *any is not possible without registered types and fails with an error.
var Gob Codec = gobCodec{}

// ByID returns the library's codec with the given id, if any.
func ByID(id byte) (Codec, bool) {
	switch id {
	case MsgpackID:
		return Msgpack, true
	case JSONID:
		return JSON, true
	case GobID:
		return Gob, true
	}
	return nil, false
}

type msgpackCodec struct{}

func (msgpackCodec) ID() byte     { return MsgpackID }
func (msgpackCodec) Name() string { return "msgpack" }

// Pooled msgpack state. ResetWriter/ResetReader keep the flags set here
// (Reset would clear them).
var msgpackEncoders = sync.Pool{New: func() any {
	enc := msgpack.NewEncoder(nil)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(true)
	return enc
}}

type msgpackDecoder struct {
	dec *msgpack.Decoder
	rd  bytes.Reader
}

var msgpackDecoders = sync.Pool{New: func() any {
	d := &msgpackDecoder{dec: msgpack.NewDecoder(nil)}
	d.dec.UseLooseInterfaceDecoding(true)
	return d
}}

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	if b, ok := appendMsgpackScalar(nil, v); ok {
		return b, nil
	}
	buf := msgpackBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	enc := msgpackEncoders.Get().(*msgpack.Encoder)
	enc.ResetWriter(buf)
	err := enc.Encode(v)
	enc.ResetWriter(nil)
	msgpackEncoders.Put(enc)
	var out []byte
	if err == nil {
		out = append([]byte(nil), buf.Bytes()...) // exact size: values live long
	}
	if buf.Cap() <= 64<<10 {
		msgpackBuffers.Put(buf)
	}
	return out, err
}

var msgpackBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// appendMsgpackScalar encodes the commonest session values (strings,
// integers, bools, floats, []byte) without the reflective encoder, in the
// same compact forms it would choose.
func appendMsgpackScalar(b []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case string:
		n := len(x)
		switch {
		case n < 32:
			b = append(make([]byte, 0, 1+n), 0xa0|byte(n))
		case n <= math.MaxUint8:
			b = append(make([]byte, 0, 2+n), 0xd9, byte(n))
		case n <= math.MaxUint16:
			b = binary.BigEndian.AppendUint16(append(make([]byte, 0, 3+n), 0xda), uint16(n))
		default:
			b = binary.BigEndian.AppendUint32(append(make([]byte, 0, 5+n), 0xdb), uint32(n))
		}
		return append(b, x...), true
	case int:
		return appendMsgpackInt(b, int64(x)), true
	case int64:
		return appendMsgpackInt(b, x), true
	case int32:
		return appendMsgpackInt(b, int64(x)), true
	case bool:
		if x {
			return append(b, 0xc3), true
		}
		return append(b, 0xc2), true
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(x)), true
	case nil:
		return append(b, 0xc0), true
	}
	return nil, false
}

func appendMsgpackInt(b []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= 127:
		return append(b, byte(n))
	case n < 0 && n >= -32:
		return append(b, byte(n))
	case n >= math.MinInt8 && n <= math.MaxInt8:
		return append(b, 0xd0, byte(n))
	case n >= math.MinInt16 && n <= math.MaxInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(n))
	case n >= math.MinInt32 && n <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

func (msgpackCodec) Unmarshal(data []byte, v any) error {
	// msgpack v5.4.1 allocates a declared length up front (an array's
	// elements, a string's or binary's bytes, even in its own Skip), so a
	// few corrupt bytes could ask for gigabytes: a fatal out-of-memory,
	// not an error. msgpackWithinBounds walks the value without
	// allocating and fails when a length exceeds the data.
	if err := msgpackWithinBounds(data); err != nil {
		return err
	}
	d := msgpackDecoders.Get().(*msgpackDecoder)
	d.rd.Reset(data)
	d.dec.ResetReader(&d.rd)
	err := d.dec.Decode(v)
	d.dec.ResetReader(nil)
	d.rd.Reset(nil)
	msgpackDecoders.Put(d)
	return err
}

type jsonCodec struct{}

func (jsonCodec) ID() byte                           { return JSONID }
func (jsonCodec) Name() string                       { return "json" }
func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

type gobCodec struct{}

func (gobCodec) ID() byte     { return GobID }
func (gobCodec) Name() string { return "gob" }

func (gobCodec) Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func (gobCodec) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*any); ok && *p == nil {
		return fmt.Errorf("serializer: gob cannot decode into an untyped value; read it with sessions.Get[T]")
	}
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

// errMsgpackBounds: a msgpack value declares more than its data holds.
var errMsgpackBounds = errors.New("serializer: msgpack value declares a length beyond its data")

// errMsgpackExt: a msgpack extension other than the timestamp (-1), the
// only one the codec writes; msgpack would decode an unknown one's payload
// as a value of its own, lengths unchecked.
var errMsgpackExt = errors.New("serializer: msgpack extension type not written by this codec")

// msgpackWithinBounds walks the first msgpack value in data and reports
// an error unless every length it declares (strings, binaries,
// extensions, array and map counts) fits in the bytes that follow.
func msgpackWithinBounds(data []byte) error {
	pending := 1 // values still to walk
	for pending > 0 {
		if len(data) == 0 {
			return errMsgpackBounds
		}
		c := data[0]
		data = data[1:]
		pending--
		size := func(n int) (int, bool) { // a big-endian length of n bytes
			if len(data) < n {
				return 0, false
			}
			v := 0
			for _, b := range data[:n] {
				v = v<<8 | int(b)
			}
			data = data[n:]
			return v, true
		}
		skip, items := 0, 0
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * int(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = int(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = int(c & 0x1f)
		case c == 0xc4 || c == 0xd9, c == 0xc5 || c == 0xda, c == 0xc6 || c == 0xdb:
			w := map[byte]int{0xc4: 1, 0xd9: 1, 0xc5: 2, 0xda: 2, 0xc6: 4, 0xdb: 4}[c]
			n, ok := size(w)
			if !ok {
				return errMsgpackBounds
			}
			skip = n
		case c == 0xc7 || c == 0xc8 || c == 0xc9:
			n, ok := size(map[byte]int{0xc7: 1, 0xc8: 2, 0xc9: 4}[c])
			if !ok {
				return errMsgpackBounds
			}
			skip = n + 1 // the type byte, then the data
			if len(data) > 0 && int8(data[0]) != -1 {
				return errMsgpackExt
			}
		case c == 0xca:
			skip = 4
		case c == 0xcb:
			skip = 8
		case c == 0xcc || c == 0xd0:
			skip = 1
		case c == 0xcd || c == 0xd1:
			skip = 2
		case c == 0xce || c == 0xd2:
			skip = 4
		case c == 0xcf || c == 0xd3:
			skip = 8
		case c >= 0xd4 && c <= 0xd8:
			skip = 1 + 1<<(c-0xd4)
			if len(data) > 0 && int8(data[0]) != -1 {
				return errMsgpackExt
			}
		case c == 0xdc || c == 0xdd:
			n, ok := size(map[byte]int{0xdc: 2, 0xdd: 4}[c])
			if !ok {
				return errMsgpackBounds
			}
			items = n
		case c == 0xde || c == 0xdf:
			n, ok := size(map[byte]int{0xde: 2, 0xdf: 4}[c])
			if !ok {
				return errMsgpackBounds
			}
			items = 2 * n
		default: // 0xc1, never used
			return fmt.Errorf("serializer: invalid msgpack byte %#x", c)
		}
		if skip > len(data) || items > len(data) { // every item takes a byte at least
			return errMsgpackBounds
		}
		data = data[skip:]
		pending += items
	}
	return nil
}
