// Command sessionctl works with session storages from the command line:
// demo, conformance, ls, show, rm, purge and stats (package
// github.com/sessionstorage/sessions/sessionctl has their documentation).
// It links the bundled drivers: redis://, rediss://, memcached://,
// bolt://, postgres://, mysql:// and sqlite://. To reach a driver of your
// own, build a sessionctl of your own the same way: a main that
// blank-imports the driver and calls sessionctl.Main.
package main

import (
	"os"

	_ "github.com/sessionstorage/sessions/drivers/bolt"
	_ "github.com/sessionstorage/sessions/drivers/memcached"
	_ "github.com/sessionstorage/sessions/drivers/redis"
	_ "github.com/sessionstorage/sessions/drivers/sql"
	"github.com/sessionstorage/sessions/sessionctl"
)

func main() { os.Exit(sessionctl.Main(os.Args[1:])) }
