package sessionctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/sessionstorage/sessions/driver"

	"github.com/sessionstorage/sessions/serializer"
)

// The operator subcommands: ls, show, rm, purge and stats.

// scan calls fn for each entry under t.prefix that is still present when
// read (an entry may expire or be deleted between listing and reading).
// With read false, fn gets entries with only the key set.
func (t *target) scan(ctx context.Context, l driver.KeyLister, read bool, fn func(e entry) error) error {
	return l.ListKeys(ctx, t.prefix, func(key string) error {
		if !read {
			return fn(entry{key: key})
		}
		data, found, err := t.get(ctx, key)
		if err != nil {
			return err
		}
		if !found {
			return nil
		}
		return fn(t.decodeEntry(key, data))
	})
}

// scanFailed reports an error that ended a scan, saying whether it was an
// interruption, and returns the exit code.
func scanFailed(stderr io.Writer, cmd string, ctx context.Context, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "sessionctl %s: interrupted; the figures above are partial\n", cmd)
		return 1
	}
	fmt.Fprintf(stderr, "sessionctl %s: %v\n", cmd, err)
	return 1
}

// runLs is the ls subcommand.
func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("ls", "STORAGE", `
Lists the sessions stored in STORAGE under the key prefix, one per line:
storage key, size in bytes, created, last access and expiry deadline (local
time), marked "expired" when the deadline has passed (the library treats
such a session as ended; 'purge -expired' deletes it), "encrypted" when it
is sealed with an encryption key (its metadata cannot be read without it),
or "corrupt" with the reason when the entry cannot be read as a session.
Totals follow. Keys come
in the storage's order. A storage whose driver cannot list keys
(memcached, gocache stores without ListKeys) is reported as such.
`+storageArgHelp, stderr)
	sf := addStorageFlags(fs)
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	t, l := openListing(ctx, sf, fs.Arg(0), "ls", stderr)
	if t == nil {
		return 1
	}
	defer t.close()
	now := time.Now()
	w := max(len(t.prefix)+43, 3)
	fmt.Fprintf(stdout, "%-*s  %7s  %-19s  %-19s  %s\n", w, "KEY", "SIZE", "CREATED", "LAST ACCESS", "EXPIRES")
	var n, live, expired, encrypted, corrupt int
	var total int64
	err := t.scan(ctx, l, true, func(e entry) error {
		n++
		total += int64(e.size)
		switch {
		case e.encrypted():
			encrypted++
			fmt.Fprintf(stdout, "%-*s  %7d  encrypted (created, access and expiry are sealed with the key)\n", w, e.key, e.size)
		case e.env == nil:
			corrupt++
			fmt.Fprintf(stdout, "%-*s  %7d  corrupt: %v\n", w, e.key, e.size, e.err)
		default:
			mark := ""
			if e.expired(now) {
				expired++
				mark = "  expired"
			} else {
				live++
			}
			fmt.Fprintf(stdout, "%-*s  %7d  %-19s  %-19s  %s%s\n", w, e.key, e.size,
				fmtTime(e.env.Created), fmtTime(e.env.LastAccess), fmtTime(e.env.Expires), mark)
		}
		return nil
	})
	enc := ""
	if encrypted > 0 {
		enc = fmt.Sprintf(", %d encrypted", encrypted)
	}
	fmt.Fprintf(stdout, "\n%s under prefix %q in %s: %d live, %d expired%s, %d corrupt; %s in total\n",
		plural(n, "entry", "entries"), t.prefix, t.name, live, expired, enc, corrupt, fmtSize(total))
	if err != nil {
		return scanFailed(stderr, "ls", ctx, err)
	}
	return 0
}

// runShow is the show subcommand.
func runShow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("show", "STORAGE ID-or-KEY", `
Prints one stored session: its storage key, created, last access and
expiry times, revision, codec and size, then its keys with the encoded size
of each value. With -values it decodes and prints the values too (as JSON
where possible); gob values cannot be decoded without their Go types, so
only their size is shown.

ID-or-KEY is a session ID (the session cookie's value: 43 characters, and
in sticky mode the session's version after them; its storage key is
derived with the prefix) or a full storage key as 'sessionctl ls'
prints it. An entry that cannot be read as a session is reported with the
reason and its first bytes, and the exit code is 1.
`+storageArgHelp, stderr)
	sf := addStorageFlags(fs)
	values := fs.Bool("values", false, "also decode and print the values (they may hold personal data)")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	t := openTarget(ctx, sf, fs.Arg(0), stderr)
	if t == nil {
		return 1
	}
	defer t.close()
	arg := fs.Arg(1)
	key, data, found, err := t.locate(ctx, arg)
	if err != nil {
		fmt.Fprintln(stderr, "sessionctl show:", err)
		return 1
	}
	if !found {
		fmt.Fprintf(stderr, "sessionctl show: no entry %s in %s (ended, expired, never written, or another -prefix?)\n", describeArg(arg, key), t.name)
		return 1
	}
	e := t.decodeEntry(key, data)
	if e.encrypted() {
		fmt.Fprintf(stdout, "key          %s\n", key)
		fmt.Fprintf(stdout, "codec        %s (id %d)\n", codecName(data[3]), data[3])
		fmt.Fprintf(stdout, "size         %d bytes\n", len(data))
		fmt.Fprintf(stdout, "encrypted    yes (key id % x): times, revision and values are sealed; sessionctl cannot open them\n", data[5:min(len(data), 9)])
		return 0
	}
	if e.env == nil {
		first := data[:min(len(data), 16)]
		fmt.Fprintf(stderr, "sessionctl show: %s is not a readable session: %v\n  %d bytes, starting % x\n",
			describeArg(arg, key), e.err, len(data), first)
		return 1
	}
	now := time.Now()
	env := e.env
	status := ""
	if e.expired(now) {
		status = "  EXPIRED: the library treats this session as ended"
	}
	fmt.Fprintf(stdout, "key          %s\n", key)
	if key != arg {
		fmt.Fprintf(stdout, "session      %s…\n", arg[:8])
	}
	fmt.Fprintf(stdout, "created      %s (%s)\n", fmtTime(env.Created), fmtRel(env.Created, now))
	fmt.Fprintf(stdout, "last access  %s (%s)\n", fmtTime(env.LastAccess), fmtRel(env.LastAccess, now))
	fmt.Fprintf(stdout, "expires      %s (%s)%s\n", fmtTime(env.Expires), fmtRel(env.Expires, now), status)
	fmt.Fprintf(stdout, "revision     %d\n", env.Revision)
	fmt.Fprintf(stdout, "codec        %s (id %d)\n", codecName(env.Codec), env.Codec)
	fmt.Fprintf(stdout, "size         %d bytes, %s\n", e.size, plural(len(env.Values), "value", "values"))
	if len(env.Values) == 0 {
		return 0
	}
	fields := append([]serializer.Field(nil), env.Values...)
	sort.Slice(fields, func(i, j int) bool { return fields[i].Key < fields[j].Key })
	kw := 3
	for _, f := range fields {
		kw = max(kw, len(f.Key))
	}
	fmt.Fprintln(stdout)
	if *values {
		fmt.Fprintf(stdout, "%-*s  %7s  %s\n", kw, "KEY", "SIZE", "VALUE")
	} else {
		fmt.Fprintf(stdout, "%-*s  %7s\n", kw, "KEY", "SIZE")
	}
	codec, known := serializer.ByID(env.Codec)
	for _, f := range fields {
		if !*values {
			fmt.Fprintf(stdout, "%-*s  %7d\n", kw, f.Key, len(f.Value))
			continue
		}
		fmt.Fprintf(stdout, "%-*s  %7d  %s\n", kw, f.Key, len(f.Value), formatValue(codec, known, f.Value))
	}
	if !*values {
		fmt.Fprintln(stdout, "\n(sizes are of the encoded values; -values prints them)")
	}
	return 0
}

// formatValue decodes one encoded value for display.
func formatValue(codec serializer.Codec, known bool, raw []byte) string {
	switch {
	case !known:
		return "(unknown codec: not decoded)"
	case codec.ID() == serializer.GobID:
		return "(gob: cannot be decoded without its Go type)"
	}
	var v any
	if err := codec.Unmarshal(raw, &v); err != nil {
		return fmt.Sprintf("(cannot decode: %v; bytes % x)", err, raw[:min(len(raw), 16)])
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprintf("%#v", v)
}

// runRm is the rm subcommand.
func runRm(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("rm", "STORAGE ID-or-KEY...", `
Deletes stored sessions, each named by session ID or storage key (see
'sessionctl show -h'), and reports for each whether it was deleted or was
not there. Deleting a missing entry is not an error, so rm can be repeated.
A server that holds the session in memory (sticky mode) keeps serving it
until it ends there or is evicted; in cluster mode the next request of the
user starts a fresh session.
`+storageArgHelp, stderr)
	sf := addStorageFlags(fs)
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return 2
	}
	t := openTarget(ctx, sf, fs.Arg(0), stderr)
	if t == nil {
		return 1
	}
	defer t.close()
	failed := 0
	for _, arg := range fs.Args()[1:] {
		key, _, found, err := t.locate(ctx, arg)
		if err == nil && found {
			err = t.delete(ctx, key)
		}
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(stderr, "sessionctl rm: %s: %v\n", arg, err)
		case found:
			fmt.Fprintf(stdout, "deleted    %s\n", describeArg(arg, key))
		default:
			fmt.Fprintf(stdout, "not found  %s (nothing to delete)\n", describeArg(arg, key))
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// progressEvery is how often purge reports progress on stderr.
var progressEvery = time.Second

// runPurge is the purge subcommand.
func runPurge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("purge", "-expired [-corrupt] STORAGE  |  purge -all STORAGE", `
Deletes sessions of STORAGE under the key prefix:
  -expired   those whose deadline has passed (the library already treats
             them as ended; storages with a TTL drop them later anyway)
  -corrupt   entries that cannot be read as a session (checksum mismatch,
             truncated, unknown format version, not a session at all);
             encrypted sessions are not corrupt and are kept
  -all       every entry under the prefix: all users are logged out
Without one of these purge refuses, so that a bare 'purge STORAGE' never
wipes anything. -corrupt and -all refuse an empty -prefix, which would take
other applications' keys. Progress goes to stderr every second on long
runs; a summary to stdout. -dry-run counts without deleting. It needs a
storage that can list keys (see 'sessionctl ls -h').
`+storageArgHelp, stderr)
	sf := addStorageFlags(fs)
	expired := fs.Bool("expired", false, "delete sessions past their deadline")
	corrupt := fs.Bool("corrupt", false, "delete entries that cannot be read as a session")
	all := fs.Bool("all", false, "delete every entry under the prefix")
	dryRun := fs.Bool("dry-run", false, "report what would be deleted, delete nothing")
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	if !*expired && !*corrupt && !*all {
		fmt.Fprintln(stderr, "sessionctl purge: say what to delete: -expired, -corrupt, or -all (every session); refusing to guess")
		return 2
	}
	if *all && (*expired || *corrupt) {
		fmt.Fprintln(stderr, "sessionctl purge: -all deletes everything; give it alone")
		return 2
	}
	t, l := openListing(ctx, sf, fs.Arg(0), "purge", stderr)
	if t == nil {
		return 1
	}
	defer t.close()
	if (*corrupt || *all) && t.prefix == "" {
		fmt.Fprintln(stderr, "sessionctl purge: -corrupt and -all need a non-empty -prefix: with none, every key of the storage (other applications' data too) would qualify")
		return 2
	}
	start := time.Now()
	last := start
	var checked, nExpired, nCorrupt, nEncrypted, deleted, kept int
	verb := "deleted"
	if *dryRun {
		verb = "would delete"
	}
	err := t.scan(ctx, l, !*all, func(e entry) error {
		checked++
		victim := *all
		switch {
		case *all:
		case e.encrypted():
			nEncrypted++ // its deadline is sealed: kept
		case e.env == nil:
			nCorrupt++
			victim = *corrupt
		case e.expired(time.Now()):
			nExpired++
			victim = *expired
		}
		if victim {
			if !*dryRun {
				if err := t.delete(ctx, e.key); err != nil {
					return err
				}
			}
			deleted++
		} else {
			kept++
		}
		if now := time.Now(); now.Sub(last) >= progressEvery {
			last = now
			fmt.Fprintf(stderr, "purge: %d entries checked, %d %s (%s)\n", checked, deleted, verb, now.Sub(start).Round(100*time.Millisecond))
		}
		return nil
	})
	what := []string{}
	if *expired {
		what = append(what, fmt.Sprintf("%d expired", nExpired))
	}
	if *corrupt {
		what = append(what, fmt.Sprintf("%d corrupt", nCorrupt))
	}
	if *all {
		what = append(what, "all")
	}

	fmt.Fprintf(stdout, "purge %s under prefix %q: %s checked, %d %s (%s), %d kept, in %s\n",
		t.name, t.prefix, plural(checked, "entry", "entries"), deleted, verb, strings.Join(what, ", "), kept,
		roundDur(time.Since(start)))
	if nEncrypted > 0 {
		fmt.Fprintf(stdout, "%s kept: their deadlines are sealed (the storage's TTL still expires them)\n", plural(nEncrypted, "encrypted entry", "encrypted entries"))
	}
	if err != nil {
		return scanFailed(stderr, "purge", ctx, err)
	}
	return 0
}

// runStats is the stats subcommand.
func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("stats", "STORAGE", `
Reads every session of STORAGE under the key prefix and prints: the number
of entries, live and expired sessions, corrupt entries (with the commonest
reasons), total, average and largest size, the oldest and newest creation
and last access times, and the number of sessions per codec. It needs a
storage that can list keys (see 'sessionctl ls -h').
`+storageArgHelp, stderr)
	sf := addStorageFlags(fs)
	if ok, code := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	t, l := openListing(ctx, sf, fs.Arg(0), "stats", stderr)
	if t == nil {
		return 1
	}
	defer t.close()
	now := time.Now()
	var (
		n, live, expired, encrypted, corrupt int
		total, largest                       int64
		largestKey                           string
		oldest, newest                       int64 // created, Unix ms
		firstAccess, lastAccess              int64
		codecs                               = map[string]int{}
		reasons                              = map[string]int{}
	)
	err := t.scan(ctx, l, true, func(e entry) error {
		n++
		total += int64(e.size)
		if int64(e.size) > largest {
			largest, largestKey = int64(e.size), e.key
		}
		if e.encrypted() {
			encrypted++
			return nil
		}
		if e.env == nil {
			corrupt++
			reasons[corruptReason(e.err)]++
			return nil
		}
		if e.expired(now) {
			expired++
		} else {
			live++
		}
		codecs[codecName(e.env.Codec)]++
		c, a := e.env.Created, e.env.LastAccess
		if oldest == 0 || c < oldest {
			oldest = c
		}
		newest = max(newest, c)
		if firstAccess == 0 || a < firstAccess {
			firstAccess = a
		}
		lastAccess = max(lastAccess, a)
		return nil
	})
	fmt.Fprintf(stdout, "storage      %s (%s store), prefix %q\n", t.name, t.st.Store().GetType(), t.prefix)
	fmt.Fprintf(stdout, "entries      %d\n", n)
	fmt.Fprintf(stdout, "sessions     %d live, %d expired\n", live, expired)
	if encrypted > 0 {
		fmt.Fprintf(stdout, "encrypted    %d (sealed: only counted in entries and size)\n", encrypted)
	}
	fmt.Fprintf(stdout, "corrupt      %d%s\n", corrupt, joinCounts(reasons, "  (", ")"))
	if n > 0 {
		fmt.Fprintf(stdout, "size         %s total, %s average, %s largest (%s)\n",
			fmtSize(total), fmtSize(total/int64(n)), fmtSize(largest), largestKey)
	}
	if live+expired > 0 {
		fmt.Fprintf(stdout, "created      oldest %s (%s), newest %s (%s)\n",
			fmtTime(oldest), fmtRel(oldest, now), fmtTime(newest), fmtRel(newest, now))
		fmt.Fprintf(stdout, "last access  oldest %s (%s), newest %s (%s)\n",
			fmtTime(firstAccess), fmtRel(firstAccess, now), fmtTime(lastAccess), fmtRel(lastAccess, now))
		fmt.Fprintf(stdout, "codecs       %s\n", joinCounts(codecs, "", ""))
	}
	if err != nil {
		return scanFailed(stderr, "stats", ctx, err)
	}
	return 0
}

// corruptReason shortens a decode error to the sentinel it wraps.
func corruptReason(err error) string {
	for _, s := range []error{serializer.ErrNotEnvelope, serializer.ErrVersion, serializer.ErrChecksum, serializer.ErrTruncated} {
		if errors.Is(err, s) {
			return strings.TrimPrefix(s.Error(), "serializer: ")
		}
	}
	return err.Error()
}

// joinCounts formats {"a": 2, "b": 1} as "a 2, b 1" (largest first),
// wrapped in before/after; "" when empty.
func joinCounts(m map[string]int, before, after string) string {
	if len(m) == 0 {
		return ""
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return before + strings.Join(parts, ", ") + after
}
