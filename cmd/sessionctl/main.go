// Command sessionctl works with session storages from the command line.
//
//	sessionctl demo                     three app servers behind a proxy, sharing a bbolt file
//	sessionctl ls STORAGE               list the sessions of a storage
//	sessionctl show STORAGE ID-or-KEY   decode one stored session
//	sessionctl rm STORAGE ID-or-KEY...  delete stored sessions
//	sessionctl purge -expired STORAGE   delete sessions past their deadline
//	sessionctl stats STORAGE            counts, sizes, ages and codecs
//	sessionctl conformance URL          run the driver conformance suite against a live storage
//
// Every subcommand takes -h for its flags, which may come before or after
// its arguments ("--" ends them). STORAGE is a storage URL of one
// of the drivers (redis://, rediss://, memcached://, bolt://, postgres://,
// mysql://, sqlite://; sessionctl links all of them) or, with -config
// FILE.toml, the name of one of the file's [storages.NAME] tables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	_ "github.com/sessionstorage/sessions/drivers/bolt"
	_ "github.com/sessionstorage/sessions/drivers/memcached"
	_ "github.com/sessionstorage/sessions/drivers/redis"
	_ "github.com/sessionstorage/sessions/drivers/sql"
)

// command is one subcommand: run gets the arguments after its name and
// returns the process exit code. ctx ends on Ctrl-C (SIGINT) or SIGTERM.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"conformance": {"run the driver conformance suite against a live storage URL", runConformance},
	"demo":        {"start three app servers behind a proxy on http://127.0.0.1:8080 and click around", runDemoCommand},
	"ls":          {"list the sessions of a storage", runLs},
	"show":        {"decode one stored session: metadata, keys, sizes (and values with -values)", runShow},
	"rm":          {"delete stored sessions by ID or storage key", runRm},
	"purge":       {"delete expired (or unreadable) sessions of a storage", runPurge},
	"stats":       {"count a storage's sessions: expired, corrupt, sizes, ages, codecs", runStats},
}

// main runs the command line with a context that Ctrl-C and SIGTERM cancel.
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills the process at once
	}()
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the sessionctl command line args (without the program name) and
// returns the exit code: 0 success, 1 failure, 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context that interrupts long commands.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "sessionctl: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

// usage lists the subcommands.
func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: sessionctl COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-12s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "\nRun 'sessionctl COMMAND -h' for a command's flags; flags may also follow the arguments.")
}

// newFlags returns a FlagSet that prints usage to stderr and does not exit.
func newFlags(name, args, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: sessionctl %s [flags] %s\n\n%s\n", name, args, strings.TrimSpace(about))
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintln(stderr, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args into fs. Flags may come before or after the
// arguments (sessionctl ls STORAGE -prefix app: works like sessionctl ls
// -prefix app: STORAGE); after the first argument, a word starting with
// "-" that is not one of fs's flags is an argument (a session ID may start
// with "-"), and "--" ends the flags. When it returns ok false the command
// should return code: 0 after -h/--help, 2 after a bad flag.
func parseFlags(fs *flag.FlagSet, args []string) (ok bool, code int) {
	if err := fs.Parse(interleaved(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, 0
		}
		return false, 2
	}
	return true, 0
}

// interleaved reorders args so that fs's flags, wherever they are, come
// first, then "--", then the arguments in their order; flag.Parse stops
// at the first argument.
func interleaved(fs *flag.FlagSet, args []string) []string {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		f := fs.Lookup(name)
		help := name == "h" || name == "help"
		if f == nil && !help && len(positional) > 0 {
			positional = append(positional, a) // an ID that starts with "-"
			continue
		}
		flags = append(flags, a) // flag.Parse reports one it does not know
		if f == nil || hasValue {
			continue
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 == len(args) {
			return flags // flag.Parse reports the missing value
		}
		i++
		flags = append(flags, args[i])
	}
	return append(append(flags, "--"), positional...)
}
