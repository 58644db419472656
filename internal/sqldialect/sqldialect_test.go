package sqldialect

import (
	"strings"
	"testing"
)

func TestCheckTable(t *testing.T) {
	for _, ok := range []string{"t", "_t1", "public.orders", strings.Repeat("a", 57), "s." + strings.Repeat("a", 57), strings.Repeat("s", 63) + ".t"} {
		if err := CheckTable(ok, 57); err != nil {
			t.Errorf("CheckTable(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "1t", "a-b", "a.b.c", "a.", ".a", "x;drop", strings.Repeat("a", 58), strings.Repeat("s", 64) + ".t"} {
		if err := CheckTable(bad, 57); err == nil || !strings.Contains(err.Error(), "WithTable") {
			t.Errorf("CheckTable(%q) = %v, want an error naming WithTable", bad, err)
		}
	}
}

func TestString(t *testing.T) {
	for d, want := range map[Dialect]string{Detect: "detect", PostgreSQL: "postgresql", SQLite: "sqlite", 9: "Dialect(9)"} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", d, got, want)
		}
	}
}
