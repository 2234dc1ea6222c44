// Command sessionctl works with session storages from the command line.
//
//	sessionctl conformance URL   run the driver conformance suite against a live storage
//
// Every subcommand takes -h for its flags. Storage URLs are those of the
// drivers (memory, redis://, rediss://, memcached://, bolt://, postgres://,
// mysql://, sqlite://); sessionctl links all of them.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	_ "github.com/sessionstorage/sessions/drivers/bolt"
	_ "github.com/sessionstorage/sessions/drivers/memcached"
	_ "github.com/sessionstorage/sessions/drivers/redis"
	_ "github.com/sessionstorage/sessions/drivers/sql"
)

// command is one subcommand: run gets the arguments after its name and
// returns the process exit code.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"conformance": {"run the driver conformance suite against a live storage URL", runConformance},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
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
	return cmd.run(args[1:], stdout, stderr)
}

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
	fmt.Fprintln(w, "\nRun 'sessionctl COMMAND -h' for a command's flags.")
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
