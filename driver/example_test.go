package driver_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/url"
	"slices"

	"github.com/eko/gocache/lib/v4/store"
	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/driver"
	"github.com/sessionstorage/sessions/drivers/memory"
)

// A driver registers a URL scheme whose Opener builds a gocache store; a
// blank import of its package then makes the scheme available. (A driver
// does this once, from its init function.)
func ExampleRegister() {
	if !slices.Contains(driver.Schemes(), "mystore") {
		driver.Register("mystore", func(ctx context.Context, u *url.URL) (store.StoreInterface, error) {
			// Parse u's options, reject unknown ones, dial the server here.
			return memory.New(memory.Options{}), nil
		})
	}
	m, err := sessions.New(sessions.Config{Storage: "mystore://anything", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close(context.Background())
	fmt.Println(slices.Contains(driver.Schemes(), "mystore"))
	// Output: true
}
