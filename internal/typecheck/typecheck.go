// Package typecheck type-checks small Go programs against this module's
// packages. Tests use it to prove that an API misuse is a compile error
// (a Subscriber option given to a Publisher constructor, say), and that
// the correct use compiles, without writing files into the tree.
//
// The program's imports are compiled to export data by `go list -export`
// (from the build cache after the first run), and the program is checked
// with go/types against them, so the go command must be on PATH: tests
// skip when it is not.
package typecheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"testing"
)

// Error is one type error of a checked program.
type Error struct {
	Line int    // line in the program's source, from 1
	Msg  string // go/types' message, such as "cannot use ... as ... value in argument to ..."
}

// Error returns the message with its line: "line 12: cannot use ...".
func (e Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

var (
	mu      sync.Mutex
	exports = map[string]string{} // import path -> export data file
)

// Check type-checks src, the text of one Go file of package main, and
// returns its type errors in line order; none when it compiles. A syntax
// error or a failing `go list` fails t. It skips t when the go command is
// not on PATH.
func Check(t testing.TB, src string) []Error {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "main.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("typecheck: parse: %v\n%s", err, Numbered(src))
	}
	var paths []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		paths = append(paths, p)
	}
	if err := load(paths); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			t.Skipf("typecheck: %v", err)
		}
		t.Fatalf("typecheck: %v", err)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		mu.Lock()
		file, ok := exports[path]
		mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("no export data for %q", path)
		}
		return os.Open(file)
	})
	var errs []Error
	conf := types.Config{Importer: imp, Error: func(err error) {
		var te types.Error
		if errors.As(err, &te) {
			errs = append(errs, Error{Line: te.Fset.Position(te.Pos).Line, Msg: te.Msg})
		} else {
			errs = append(errs, Error{Msg: err.Error()})
		}
	}}
	_, _ = conf.Check("main", fset, []*ast.File{f}, nil)
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	return errs
}

// load adds the export data of paths and their dependencies to exports.
func load(paths []string) error {
	mu.Lock()
	defer mu.Unlock()
	var missing []string
	for _, p := range paths {
		if _, ok := exports[p]; !ok {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	cmd := exec.Command(goCmd, append([]string{"list", "-export", "-deps", "-json=ImportPath,Export,Error"}, missing...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go list -export %v: %v\n%s", missing, err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath, Export string
			Error              *struct{ Err string }
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("go list -export: %v", err)
		}
		if p.Error != nil {
			return fmt.Errorf("go list -export: %s: %s", p.ImportPath, p.Error.Err)
		}
		if p.Export != "" {
			exports[p.ImportPath] = p.Export
		}
	}
	return nil
}

// Numbered returns src with line numbers, for failure messages.
func Numbered(src string) string {
	var b bytes.Buffer
	for i, line := range bytes.Split([]byte(src), []byte("\n")) {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, line)
	}
	return b.String()
}
