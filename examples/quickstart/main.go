// Command quickstart counts a visitor's visits in a session.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/sessionstorage/sessions"
)

func main() {
	m, err := sessions.New(sessions.Config{}) // in-process storage, sticky mode
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Close(ctx) // writes what is still queued
	}()

	http.Handle("/", m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := sessions.FromContext(r.Context())
		n, _, _ := sessions.Get[int](s, "visits")
		if err := s.Set("visits", n+1); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "visit %d\n", n+1)
	})))
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", nil))
}
