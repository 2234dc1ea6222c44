// Command sessionctl is sessionctl with the map driver linked, so that its
// commands (conformance, ls, show, rm, purge, stats) reach map:// storages.
package main

import (
	"os"

	_ "github.com/sessionstorage/sessions/examples/mapdriver"
	"github.com/sessionstorage/sessions/sessionctl"
)

func main() { os.Exit(sessionctl.Main(os.Args[1:])) }
