// Package reliability holds the library's outage tests: real servers
// (redis-server, PostgreSQL) are killed and restarted under Managers in
// both modes, to show what users see while the storage is gone and that
// nothing acknowledged is lost once it is back. It has no code of its own.
package reliability
