package sqlstore

import (
	"fmt"
	"regexp"
	"strings"
)

// Dialect selects the SQL flavour a Store speaks.
type Dialect int

// The supported dialects.
const (
	// Postgres is PostgreSQL (9.5 or later), through
	// github.com/jackc/pgx/v5/stdlib or any database/sql driver for it.
	Postgres Dialect = iota + 1
	// MySQL is MySQL 5.7+/8.x or MariaDB 10.3+, through
	// github.com/go-sql-driver/mysql.
	MySQL
	// SQLite is SQLite 3.24 or later, through modernc.org/sqlite (driver
	// name "sqlite") or another database/sql SQLite driver.
	SQLite
)

// String returns "postgres", "mysql" or "sqlite".
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "postgres"
	case MySQL:
		return "mysql"
	case SQLite:
		return "sqlite"
	}
	return fmt.Sprintf("Dialect(%d)", int(d))
}

func (d Dialect) valid() bool { return d >= Postgres && d <= SQLite }

// identRE is what a table name (each part of schema.table) may look like.
var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// table is a validated, possibly schema-qualified table name.
type table struct {
	schema, name string
}

func parseTable(s string) (table, error) {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return table{}, fmt.Errorf("sqlstore: table name %q: at most one dot (schema.table)", s)
	}
	for _, p := range parts {
		if !identRE.MatchString(p) {
			return table{}, fmt.Errorf("sqlstore: table name %q: each part must match %s", s, identRE)
		}
	}
	if len(parts) == 2 {
		return table{schema: parts[0], name: parts[1]}, nil
	}
	return table{name: parts[0]}, nil
}

func (d Dialect) quote(id string) string {
	if d == MySQL {
		return "`" + id + "`"
	}
	return `"` + id + `"`
}

// qualified is the quoted table name, with its schema if any.
func (d Dialect) qualified(t table) string {
	if t.schema != "" {
		return d.quote(t.schema) + "." + d.quote(t.name)
	}
	return d.quote(t.name)
}

func indexName(t table) string { return t.name + "_expires_at_idx" }

// DDL returns the statements that create the table (if missing) for the
// given dialect and table name ("" means DefaultTable; "schema.table" is
// allowed), in order, without trailing semicolons. They are what a Store runs
// at start-up unless Options.NoCreate is set, and what a user who manages
// migrations should apply instead. Any other schema works if it has the
// columns key, value and expires_at with these meanings and, for
// PostgreSQL, a key column with a byte-order ("C") collation and, for
// MySQL, a binary key column (so that keys are compared byte for byte).
func DDL(d Dialect, tableName string) ([]string, error) {
	if !d.valid() {
		return nil, fmt.Errorf("sqlstore: unknown dialect %v", d)
	}
	if tableName == "" {
		tableName = DefaultTable
	}
	t, err := parseTable(tableName)
	if err != nil {
		return nil, err
	}
	q, idx := d.qualified(t), indexName(t)
	switch d {
	case Postgres:
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + q + ` (
	"key"        VARCHAR(255) COLLATE "C" NOT NULL PRIMARY KEY,
	"value"      BYTEA NOT NULL,
	"expires_at" BIGINT NULL
)`,
			`CREATE INDEX IF NOT EXISTS ` + d.quote(idx) + ` ON ` + q + ` ("expires_at")`,
		}, nil
	case MySQL:
		return []string{
			"CREATE TABLE IF NOT EXISTS " + q + " (\n" +
				"\t`key`        VARBINARY(255) NOT NULL PRIMARY KEY,\n" +
				"\t`value`      LONGBLOB NOT NULL,\n" +
				"\t`expires_at` BIGINT NULL,\n" +
				"\tINDEX " + d.quote(idx) + " (`expires_at`)\n" +
				") ENGINE=InnoDB",
		}, nil
	default: // SQLite
		idxName := d.quote(idx)
		if t.schema != "" {
			idxName = d.quote(t.schema) + "." + idxName
		}
		return []string{
			`CREATE TABLE IF NOT EXISTS ` + q + ` (
	"key"        TEXT NOT NULL PRIMARY KEY,
	"value"      BLOB NOT NULL,
	"expires_at" INTEGER NULL
)`,
			`CREATE INDEX IF NOT EXISTS ` + idxName + ` ON ` + d.quote(t.name) + ` ("expires_at")`,
		}, nil
	}
}

// queries holds a store's statements, built once for its dialect and table.
type queries struct {
	table                   string // quoted, qualified table name
	get, upsert, del, clear string
	casUpdate               string // old != nil: conditional UPDATE
	casInsert               string // old == nil: insert (PostgreSQL, SQLite: or replace an expired row)
	casReplaceExpired       string // MySQL only: replace an expired row
	casVerify               string // MySQL only: does the row hold exactly (value, expires_at)?
	casDelete               string // key, old value, now
	listExpiring            string // now, before, key pattern (keyPattern), limit
	sweep                   string
	listFirst, listNext     string
	probe                   string
}

func buildQueries(d Dialect, t table) queries {
	T := d.qualified(t)
	k, v, e := d.quote("key"), d.quote("value"), d.quote("expires_at")
	n := 0
	p := func() string { // next placeholder
		n++
		if d == Postgres {
			return fmt.Sprintf("$%d", n)
		}
		return "?"
	}
	reset := func() { n = 0 }
	q := queries{table: T}

	reset()
	q.get = fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s = %s AND (%s IS NULL OR %s > %s)", v, e, T, k, p(), e, e, p())

	reset()
	if d == MySQL {
		q.upsert = fmt.Sprintf("INSERT INTO %s (%s, %s, %s) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE %s = VALUES(%s), %s = VALUES(%s)",
			T, k, v, e, v, v, e, e)
	} else {
		q.upsert = fmt.Sprintf("INSERT INTO %s (%s, %s, %s) VALUES (%s, %s, %s) ON CONFLICT (%s) DO UPDATE SET %s = excluded.%s, %s = excluded.%s",
			T, k, v, e, p(), p(), p(), k, v, v, e, e)
	}

	reset()
	q.del = fmt.Sprintf("DELETE FROM %s WHERE %s = %s", T, k, p())
	q.clear = "DELETE FROM " + T

	reset()
	q.casUpdate = fmt.Sprintf("UPDATE %s SET %s = %s, %s = %s WHERE %s = %s AND %s = %s AND (%s IS NULL OR %s > %s)",
		T, v, p(), e, p(), k, p(), v, p(), e, e, p())

	reset()
	if d == MySQL {
		q.casInsert = fmt.Sprintf("INSERT INTO %s (%s, %s, %s) VALUES (?, ?, ?)", T, k, v, e)
		q.casReplaceExpired = fmt.Sprintf("UPDATE %s SET %s = ?, %s = ? WHERE %s = ? AND %s IS NOT NULL AND %s <= ?", T, v, e, k, e, e)
		q.casVerify = fmt.Sprintf("SELECT COUNT(*) FROM %s WHERE %s = ? AND %s = ? AND %s <=> ? AND (%s IS NULL OR %s > ?)", T, k, v, e, e, e)
	} else {
		q.casInsert = fmt.Sprintf("INSERT INTO %s AS cur (%s, %s, %s) VALUES (%s, %s, %s) ON CONFLICT (%s) DO UPDATE SET %s = excluded.%s, %s = excluded.%s WHERE cur.%s IS NOT NULL AND cur.%s <= %s",
			T, k, v, e, p(), p(), p(), k, v, v, e, e, e, e, p())
	}

	reset()
	q.casDelete = fmt.Sprintf("DELETE FROM %s WHERE %s = %s AND %s = %s AND (%s IS NULL OR %s > %s)",
		T, k, p(), v, p(), e, e, p())

	// The range on expires_at and the order come from its index; the key
	// pattern filters the rows of that range. SQLite's LIKE ignores ASCII
	// case, its GLOB does not.
	reset()
	now, before := p(), p()
	match := "LIKE " + p() + " ESCAPE '" + likeEscape + "'"
	if d == SQLite {
		match = "GLOB ?"
	}
	q.listExpiring = fmt.Sprintf("SELECT %s, %s FROM %s WHERE %s > %s AND %s < %s AND %s %s ORDER BY %s LIMIT %s",
		k, v, T, e, now, e, before, k, match, e, p())

	reset()
	switch d {
	case Postgres:
		// SKIP LOCKED: sweepers on several servers share the work
		// instead of queueing on each other's row locks.
		q.sweep = fmt.Sprintf("DELETE FROM %s WHERE %s IN (SELECT %s FROM %s WHERE %s <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)", T, k, k, T, e)
	case MySQL:
		q.sweep = fmt.Sprintf("DELETE FROM %s WHERE %s <= ? ORDER BY %s LIMIT ?", T, e, e)
	default:
		q.sweep = fmt.Sprintf("DELETE FROM %s WHERE %s IN (SELECT %s FROM %s WHERE %s <= ? LIMIT ?)", T, k, k, T, e)
	}

	reset()
	q.listFirst = fmt.Sprintf("SELECT %s FROM %s WHERE %s >= %s AND (%s IS NULL OR %s > %s) ORDER BY %s LIMIT %d", k, T, k, p(), e, e, p(), k, pageSize)
	reset()
	q.listNext = fmt.Sprintf("SELECT %s FROM %s WHERE %s > %s AND (%s IS NULL OR %s > %s) ORDER BY %s LIMIT %d", k, T, k, p(), e, e, p(), k, pageSize)

	q.probe = fmt.Sprintf("SELECT %s, %s, %s FROM %s WHERE 1 = 0", k, v, e, T)
	return q
}

// likeEscape is the escape character of listExpiring's LIKE pattern: not
// a backslash, whose meaning in a string literal depends on MySQL's
// NO_BACKSLASH_ESCAPES and PostgreSQL's standard_conforming_strings.
const likeEscape = "!"

// keyPattern is the listExpiring pattern that matches the keys starting
// with prefix: a LIKE pattern, or for SQLite a GLOB pattern.
func (d Dialect) keyPattern(prefix string) string {
	var b strings.Builder
	b.Grow(len(prefix) + 8)
	for i := range len(prefix) { // every special character is ASCII
		c := prefix[i]
		switch {
		case d == SQLite && (c == '*' || c == '?' || c == '['):
			b.WriteByte('[')
			b.WriteByte(c)
			b.WriteByte(']')
		case d != SQLite && (c == '%' || c == '_' || c == likeEscape[0]):
			b.WriteString(likeEscape)
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	if d == SQLite {
		b.WriteByte('*')
	} else {
		b.WriteByte('%')
	}
	return b.String()
}

// Bounds of one SetMany statement. Each is far below its dialect's limit
// on bind parameters (PostgreSQL and MySQL 65535, SQLite 32766, or 999
// before SQLite 3.32, which SQLite's bound respects). A statement also
// holds at most maxManyBytes of keys and values, so that it stays under
// MySQL's max_allowed_packet (4 MiB by default in MySQL 5.7, escaping
// included); a single larger entry goes alone.
const (
	maxManyRows       = 512 // PostgreSQL (2 parameters a row plus 1), MySQL (3 a row)
	maxManyRowsSQLite = 333 // 3 parameters a row: 999 in all
	maxManyBytes      = 1 << 20
)

// manyRows is the most rows one SetMany statement of d holds.
func (d Dialect) manyRows() int {
	if d == SQLite {
		return maxManyRowsSQLite
	}
	return maxManyRows
}

// manySize is the row count of the statement that carries n rows. For
// PostgreSQL it is n rounded up to a power of two and the statement is
// padded with NULL rows, which it skips: pgx prepares and caches every
// distinct statement text on each connection, and this keeps that to ten
// texts instead of one per batch size. MySQL (interpolateParams) and
// SQLite prepare nothing that outlives the call, so their size is n.
func (d Dialect) manySize(n int) int {
	if d != Postgres {
		return n
	}
	size := 1
	for size < n {
		size *= 2
	}
	return size
}

// upsertMany is the statement that upserts rows rows into T in one go,
// the same columns and outcome as queries.upsert. Parameters: for
// PostgreSQL expires_at first, then key and value of each row (a NULL key
// marks a padding row); for MySQL and SQLite key, value, expires_at of
// each row.
func (d Dialect) upsertMany(T string, rows int) string {
	k, v, e := d.quote("key"), d.quote("value"), d.quote("expires_at")
	var b strings.Builder
	b.Grow(160 + rows*24)
	fmt.Fprintf(&b, "INSERT INTO %s (%s, %s, %s) ", T, k, v, e)
	switch d {
	case Postgres:
		// INSERT ... SELECT from VALUES, to filter out the padding; the
		// casts type the parameters, which a VALUES list in a subquery
		// does not take from the target columns.
		b.WriteString("SELECT b.k, b.v, $1::bigint FROM (VALUES ")
		for i := range rows {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "($%d::text, $%d::bytea)", 2+2*i, 3+2*i)
		}
		fmt.Fprintf(&b, ") AS b (k, v) WHERE b.k IS NOT NULL ON CONFLICT (%s) DO UPDATE SET %s = excluded.%s, %s = excluded.%s", k, v, v, e, e)
	case MySQL:
		b.WriteString("VALUES ")
		for i := range rows {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, ?)")
		}
		fmt.Fprintf(&b, " ON DUPLICATE KEY UPDATE %s = VALUES(%s), %s = VALUES(%s)", v, v, e, e)
	default: // SQLite
		b.WriteString("VALUES ")
		for i := range rows {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("(?, ?, ?)")
		}
		fmt.Fprintf(&b, " ON CONFLICT (%s) DO UPDATE SET %s = excluded.%s, %s = excluded.%s", k, v, v, e, e)
	}
	return b.String()
}
