package sessions

import (
	"fmt"
	"reflect"
	"time"
)

// checkSerializable rejects what no codec can store before the codec sees
// it: funcs, chans, unsafe pointers and cyclic values (which would make
// msgpack and gob recurse until the stack overflows).
func checkSerializable(v any) error {
	switch v.(type) {
	case nil, string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		float32, float64, []byte, time.Time, time.Duration, []string, []int, map[string]string:
		return nil
	}
	return walkValue(reflect.ValueOf(v), map[uintptr]bool{}, 0)
}

const maxDepth = 10000

func walkValue(v reflect.Value, onPath map[uintptr]bool, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	switch v.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return fmt.Errorf("contains a %s", v.Type())
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if v.IsNil() {
			return nil
		}
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() <= reflect.Complex128 {
			return nil // slice of scalars: cannot hold anything bad
		}
		p := v.Pointer()
		if v.Kind() == reflect.Slice {
			// A slice is a cycle only if an element leads back to it; key
			// on its array plus length so that sub-slices don't collide.
			p ^= uintptr(v.Len()) << 48
		}
		if onPath[p] {
			return fmt.Errorf("contains a cycle through a %s", v.Type())
		}
		onPath[p] = true
		defer delete(onPath, p)
		switch v.Kind() {
		case reflect.Pointer:
			return walkValue(v.Elem(), onPath, depth+1)
		case reflect.Map:
			it := v.MapRange()
			for it.Next() {
				if err := walkValue(it.Key(), onPath, depth+1); err != nil {
					return err
				}
				if err := walkValue(it.Value(), onPath, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		fallthrough
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if err := walkValue(v.Index(i), onPath, depth+1); err != nil {
				return err
			}
		}
	case reflect.Interface:
		if !v.IsNil() {
			return walkValue(v.Elem(), onPath, depth+1)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			f := t.Field(i)
			// Codecs skip unexported fields and fields tagged "-".
			if !f.IsExported() || f.Tag.Get("msgpack") == "-" || f.Tag.Get("json") == "-" {
				continue
			}
			if err := walkValue(v.Field(i), onPath, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
