// Package sqldialect is what ferry's SQL packages (dedupe/sqlstore and
// outbox) share: the dialect type they export under their own names, its
// detection from a database/sql driver, and the table name rule.
package sqldialect

import (
	"database/sql"
	"fmt"
	"regexp"
	"strings"
)

// Dialect is the SQL dialect of a database.
type Dialect uint8

// Dialects.
const (
	// Detect picks the dialect from the database/sql driver's type.
	Detect Dialect = iota
	// PostgreSQL.
	PostgreSQL
	// SQLite, 3.35 or later.
	SQLite
)

// String returns the dialect name.
func (d Dialect) String() string {
	switch d {
	case Detect:
		return "detect"
	case PostgreSQL:
		return "postgresql"
	case SQLite:
		return "sqlite"
	}
	return fmt.Sprintf("Dialect(%d)", d)
}

// Of tells the dialect of db from its driver's type: drivers whose type
// name mentions sqlite are SQLite; pgx's stdlib, lib/pq and others
// mentioning postgres or pgx are PostgreSQL. ok is false for any other
// driver.
func Of(db *sql.DB) (d Dialect, ok bool) {
	name := strings.ToLower(fmt.Sprintf("%T", db.Driver()))
	switch {
	case strings.Contains(name, "sqlite"):
		return SQLite, true
	case strings.Contains(name, "stdlib"), strings.Contains(name, "pgx"),
		strings.Contains(name, "pq."), strings.Contains(name, "postgres"):
		return PostgreSQL, true
	}
	return Detect, false
}

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckTable checks a table name for WithTable(name): letters, digits and
// underscores, not starting with a digit, optionally qualified by a schema
// ("schema.table"), the schema at most 63 characters and the table at
// most maxTable. The error text names the problem, for the caller to wrap.
func CheckTable(name string, maxTable int) error {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return fmt.Errorf("WithTable(%q): at most one schema qualifier", name)
	}
	for i, p := range parts {
		limit := 63
		if i == len(parts)-1 {
			limit = maxTable
		}
		if !ident.MatchString(p) || len(p) > limit {
			return fmt.Errorf("WithTable(%q): %q is not a plain identifier (letters, digits, _; max %d)", name, p, limit)
		}
	}
	return nil
}
