package metrics

import (
	"reflect"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// forEachErrorCode calls fn for every non-zero ErrorCode field in resp, at
// any depth (a Produce response has one per partition). The two hot APIs are
// walked directly; the others by reflection.
func forEachErrorCode(resp kmsg.Response, fn func(int16)) {
	switch r := resp.(type) {
	case *kmsg.ProduceResponse:
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					fn(p.ErrorCode)
				}
			}
		}
		return
	case *kmsg.FetchResponse:
		if r.ErrorCode != 0 {
			fn(r.ErrorCode)
		}
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode != 0 {
					fn(p.ErrorCode)
				}
			}
		}
		return
	}
	walkErrorCodes(reflect.ValueOf(resp), fn, 0)
}

var int16Type = reflect.TypeFor[int16]()

func walkErrorCodes(v reflect.Value, fn func(int16), depth int) {
	if depth > 8 {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkErrorCodes(v.Elem(), fn, depth+1)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Struct {
			return
		}
		for i := range v.Len() {
			walkErrorCodes(v.Index(i), fn, depth+1)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			switch {
			case f.Name == "ErrorCode" && f.Type == int16Type:
				if c := int16(v.Field(i).Int()); c != 0 {
					fn(c)
				}
			case f.Type.Kind() == reflect.Slice || f.Type.Kind() == reflect.Struct:
				walkErrorCodes(v.Field(i), fn, depth+1)
			}
		}
	}
}
