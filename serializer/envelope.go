package serializer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Envelope is one stored session: metadata plus the values, each already
// encoded by the codec named in Codec.
//
// Binary layout, version 1 (integers are unsigned varints unless noted):
//
//	magic      2 bytes  0x53 0xE5
//	version    1 byte   1
//	codec id   1 byte
//	flags      1 byte   FlagEncrypted, FlagXChaCha (see Sealer); other bits are rejected
//	created    varint   Unix milliseconds
//	lastAccess varint   Unix milliseconds
//	expires    varint   Unix milliseconds
//	revision   varint
//	count      varint   number of values
//	count × { key length, key bytes, value length, value bytes }
//	checksum   4 bytes  CRC-32C (Castagnoli) of everything before it, big endian
//
// Deleted keys are not carried as tombstones: the library merges a
// request's changes (its sets and deletes) onto the freshest stored copy at
// commit time, so the stored entry only ever needs the live values.
type Envelope struct {
	Codec      byte
	Flags      byte
	Created    int64 // Unix milliseconds
	LastAccess int64 // Unix milliseconds
	Expires    int64 // Unix milliseconds: the session has ended after this
	Revision   uint64
	Values     []Field
}

// Field is one encoded value of an Envelope.
type Field struct {
	Key   string
	Value []byte
}

// FormatVersion is the envelope format this package writes.
const FormatVersion = 1

const (
	magic0, magic1 = 0x53, 0xE5
	headerLen      = 5
	checksumLen    = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors DecodeEnvelope returns, wrapped with detail. Each means the entry is
// not a session this program can read.
var (
	ErrNotEnvelope = errors.New("serializer: not a session envelope")
	ErrVersion     = errors.New("serializer: unsupported envelope format version")
	ErrChecksum    = errors.New("serializer: envelope checksum mismatch")
	ErrTruncated   = errors.New("serializer: envelope truncated or malformed")
)

// Size returns the exact length AppendBinary will add.
func (e *Envelope) Size() int {
	n := headerLen + checksumLen +
		uvarintLen(uint64(e.Created)) + uvarintLen(uint64(e.LastAccess)) +
		uvarintLen(uint64(e.Expires)) + uvarintLen(e.Revision) +
		uvarintLen(uint64(len(e.Values)))
	for _, f := range e.Values {
		n += uvarintLen(uint64(len(f.Key))) + len(f.Key) + uvarintLen(uint64(len(f.Value))) + len(f.Value)
	}
	return n
}

// AppendBinary appends the encoded envelope to buf.
func (e *Envelope) AppendBinary(buf []byte) []byte {
	start := len(buf)
	buf = append(buf, magic0, magic1, FormatVersion, e.Codec, e.Flags)
	buf = binary.AppendUvarint(buf, uint64(e.Created))
	buf = binary.AppendUvarint(buf, uint64(e.LastAccess))
	buf = binary.AppendUvarint(buf, uint64(e.Expires))
	buf = binary.AppendUvarint(buf, e.Revision)
	buf = binary.AppendUvarint(buf, uint64(len(e.Values)))
	for _, f := range e.Values {
		buf = binary.AppendUvarint(buf, uint64(len(f.Key)))
		buf = append(buf, f.Key...)
		buf = binary.AppendUvarint(buf, uint64(len(f.Value)))
		buf = append(buf, f.Value...)
	}
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
}

// Marshal returns the encoded envelope.
func (e *Envelope) Marshal() []byte {
	return e.AppendBinary(make([]byte, 0, e.Size()))
}

// DecodeEnvelope parses data. The returned Field values alias data: the
// caller must not modify data while it uses them. Any error wraps one of
// ErrNotEnvelope, ErrVersion, ErrChecksum, ErrTruncated or ErrEncrypted (open
// it with a Sealer first); it never panics, whatever the input.
func DecodeEnvelope(data []byte) (*Envelope, error) {
	if err := checkHeader(data); err != nil {
		return nil, err
	}
	if data[4]&FlagEncrypted != 0 {
		return nil, ErrEncrypted
	}
	if len(data) < headerLen+checksumLen {
		return nil, ErrTruncated
	}
	body := data[:len(data)-checksumLen]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(data[len(body):]) {
		return nil, ErrChecksum
	}
	e := &Envelope{Codec: data[3], Flags: data[4]}
	if e.Flags != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrVersion, e.Flags)
	}
	r := reader{buf: body[headerLen:]}
	e.Created = int64(r.uvarint())
	e.LastAccess = int64(r.uvarint())
	e.Expires = int64(r.uvarint())
	e.Revision = r.uvarint()
	n := r.uvarint()
	if r.bad || n > uint64(len(r.buf))/2 {
		return nil, ErrTruncated
	}
	e.Values = make([]Field, n)
	for i := range e.Values {
		k := r.bytes()
		v := r.bytes()
		if r.bad {
			return nil, ErrTruncated
		}
		e.Values[i] = Field{Key: string(k), Value: v}
	}
	if len(r.buf) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrTruncated, len(r.buf))
	}
	return e, nil
}

type reader struct {
	buf []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.buf)
	// n != uvarintLen(v): an overlong encoding (0x80 0x00 for 0), which
	// AppendUvarint never writes; rejected so that an entry has exactly
	// one encoding.
	if n <= 0 || n != uvarintLen(v) {
		r.bad = true
		r.buf = nil
		return 0
	}
	r.buf = r.buf[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.buf)) {
		r.bad = true
		r.buf = nil
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
