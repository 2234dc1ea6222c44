// Package sessionctl is the sessionctl command line as a library, for
// driver authors and operators who build their own sessionctl: one that
// links a storage driver the bundled command does not (a driver of your
// own, registered with driver.Register), or only the drivers they
// use. Its main is six lines:
//
//	package main
//
//	import (
//		"os"
//
//		_ "example.com/yourmodule/yourdriver" // registers its URL scheme
//		"github.com/sessionstorage/sessions/sessionctl"
//	)
//
//	func main() { os.Exit(sessionctl.Main(os.Args[1:])) }
//
// The commands reach every storage URL whose driver the program links
// (blank-import more drivers, such as drivers/redis, to add theirs);
// github.com/sessionstorage/sessions/cmd/sessionctl is this main over the
// bundled drivers. The subcommands:
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
// its arguments ("--" ends them). STORAGE is a storage URL of one of the
// linked drivers (cmd/sessionctl links redis://, rediss://, memcached://,
// bolt://, postgres://, mysql://, sqlite://) or, with -config FILE.toml,
// the name of one of the file's [storages.NAME] tables. A storage whose
// driver cannot list keys (no driver.KeyLister) works with show and rm;
// ls, purge and stats say that it cannot list. The demo's default storage
// is a bbolt file when the program links drivers/bolt, else "memory".
package sessionctl

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

// Main runs the sessionctl command line args (without the program name,
// as in os.Args[1:]) with standard output and standard error, and returns
// the exit code for os.Exit: 0 success, 1 failure, 2 usage error. Ctrl-C
// (SIGINT) or SIGTERM interrupts a long command (demo, conformance, purge)
// cleanly; a second one kills the process at once.
func Main(args []string) int {
	return Command{Stdout: os.Stdout, Stderr: os.Stderr}.Main(args)
}

// Command is a sessionctl command line with outputs of its own, for
// programs and tests that capture them.
type Command struct {
	Stdout io.Writer // the commands' results; nil discards them
	Stderr io.Writer // usage, errors and the demo's log; nil discards them
	// Context, when not nil, interrupts long commands when it ends;
	// when nil, Main uses one that Ctrl-C (SIGINT) and SIGTERM end.
	Context context.Context
}

// Main runs the command line args (without the program name) and returns
// the exit code: 0 success, 1 failure, 2 usage error.
func (c Command) Main(args []string) int {
	stdout, stderr := c.Stdout, c.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	ctx := c.Context
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		go func() {
			<-ctx.Done()
			stop() // a second Ctrl-C kills the process at once
		}()
	}
	return runContext(ctx, args, stdout, stderr)
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
