// Package isnil reports whether an interface value is nil or holds a nil
// pointer, map, slice, channel or func (a "typed nil"), so that
// constructors can reject a typed nil at construction instead of
// panicking on every later call.
package isnil

import "reflect"

// Is reports whether v is nil or a typed nil (a nil pointer, map, slice,
// channel, func or interface inside a non-nil interface value).
func Is(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Chan, reflect.Func, reflect.Interface, reflect.UnsafePointer:
		return rv.IsNil()
	}
	return false
}
