package retry_test

// A minimal stand-in for testify's assert and require (testify's yaml
// dependency is missing from go.sum, and go.sum is shared): assert reports
// and continues, require stops the test.

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

type checker struct{ fatal bool }

var (
	assert  = checker{fatal: false}
	require = checker{fatal: true}
)

func (c checker) fail(t testing.TB, msgAndArgs []any, format string, args ...any) bool {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if len(msgAndArgs) > 0 {
		if f, ok := msgAndArgs[0].(string); ok {
			msg += ": " + fmt.Sprintf(f, msgAndArgs[1:]...)
		}
	}
	if c.fatal {
		t.Fatal(msg)
	} else {
		t.Error(msg)
	}
	return false
}

func (c checker) NoError(t testing.TB, err error, m ...any) bool {
	t.Helper()
	if err != nil {
		return c.fail(t, m, "unexpected error: %v", err)
	}
	return true
}

func (c checker) Error(t testing.TB, err error, m ...any) bool {
	t.Helper()
	if err == nil {
		return c.fail(t, m, "expected an error, got nil")
	}
	return true
}

func (c checker) ErrorIs(t testing.TB, err, target error, m ...any) bool {
	t.Helper()
	if !errors.Is(err, target) {
		return c.fail(t, m, "error %v is not %v", err, target)
	}
	return true
}

func (c checker) Equal(t testing.TB, want, got any, m ...any) bool {
	t.Helper()
	if !reflect.DeepEqual(want, got) {
		return c.fail(t, m, "not equal:\nwant %#v\n got %#v", want, got)
	}
	return true
}

func (c checker) EqualValues(t testing.TB, want, got any, m ...any) bool {
	t.Helper()
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	if wv.IsValid() && gv.IsValid() && wv.Type().ConvertibleTo(gv.Type()) && reflect.DeepEqual(wv.Convert(gv.Type()).Interface(), got) {
		return true
	}
	return c.Equal(t, want, got, m...)
}

func (c checker) Len(t testing.TB, v any, n int, m ...any) bool {
	t.Helper()
	if l := reflect.ValueOf(v).Len(); l != n {
		return c.fail(t, m, "length %d, want %d: %v", l, n, v)
	}
	return true
}

func (c checker) Empty(t testing.TB, v any, m ...any) bool {
	t.Helper()
	rv := reflect.ValueOf(v)
	if rv.IsValid() && rv.Len() != 0 {
		return c.fail(t, m, "not empty: %v", v)
	}
	return true
}

func (c checker) NotSame(t testing.TB, a, b any, m ...any) bool {
	t.Helper()
	if reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() {
		return c.fail(t, m, "same pointer")
	}
	return true
}

func (c checker) True(t testing.TB, v bool, m ...any) bool {
	t.Helper()
	if !v {
		return c.fail(t, m, "not true")
	}
	return true
}

func (c checker) False(t testing.TB, v bool, m ...any) bool {
	t.Helper()
	if v {
		return c.fail(t, m, "not false")
	}
	return true
}

func (c checker) Contains(t testing.TB, s, sub string, m ...any) bool {
	t.Helper()
	if !strings.Contains(s, sub) {
		return c.fail(t, m, "%q does not contain %q", s, sub)
	}
	return true
}

func (c checker) Regexp(t testing.TB, re, s string, m ...any) bool {
	t.Helper()
	if !regexp.MustCompile(re).MatchString(s) {
		return c.fail(t, m, "%q does not match %s", s, re)
	}
	return true
}

func (c checker) Nil(t testing.TB, v any, m ...any) bool {
	t.Helper()
	rv := reflect.ValueOf(v)
	if v != nil && !(rv.Kind() == reflect.Func || rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Map || rv.Kind() == reflect.Slice) || (v != nil && !rv.IsNil()) {
		return c.fail(t, m, "not nil: %v", v)
	}
	return true
}
