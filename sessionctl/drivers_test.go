package sessionctl

// The tests use the drivers that cmd/sessionctl links.
import (
	_ "github.com/sessionstorage/sessions/drivers/bolt"
	_ "github.com/sessionstorage/sessions/drivers/memcached"
	_ "github.com/sessionstorage/sessions/drivers/redis"
	_ "github.com/sessionstorage/sessions/drivers/sql"
)
