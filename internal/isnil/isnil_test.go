package isnil

import "testing"

type s struct{}

func (*s) M() {}

type m interface{ M() }

func TestIs(t *testing.T) {
	var p *s
	var f func()
	var mp map[string]int
	var i m = p
	for name, c := range map[string]struct {
		v    any
		want bool
	}{
		"nil": {nil, true}, "typed nil pointer": {p, true}, "nil func": {f, true},
		"nil map": {mp, true}, "typed nil in interface": {i, true},
		"pointer": {&s{}, false}, "struct": {s{}, false}, "int": {0, false}, "string": {"", false},
	} {
		if got := Is(c.v); got != c.want {
			t.Errorf("%s: Is = %v, want %v", name, got, c.want)
		}
	}
}
