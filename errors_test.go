package sessions_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/sessionstorage/sessions"
	"github.com/sessionstorage/sessions/internal/faultstore"
)

// A storage failure reaches the ErrorHandler as a *StorageError naming the
// operation and the storage, with the driver's error inside; after a
// failed commit replaced the response, the handler's Write returns
// ErrResponseAborted.
func TestStorageErrorsNameOperationAndStorage(t *testing.T) {
	b := newBackend(t)
	var mu sync.Mutex
	var got []error
	var writeErr error
	cfg := sessions.Config{Cluster: true, ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
	}}
	n := newNode(t, b, cfg)
	h := n.m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := sessions.FromContext(r.Context()).Set("k", "v"); err != nil {
			t.Errorf("Set: %v", err)
		}
		_, writeErr = w.Write([]byte("the handler's own answer"))
	}))
	c := newClient(t)
	c.must(n.h, "/set?k=a&v=1", 200)

	b.fault.SetOpMode(faultstore.OpGet, faultstore.Fail)
	c.must(n.h, "/get?k=a", http.StatusServiceUnavailable)
	b.fault.SetOpMode(faultstore.OpGet, faultstore.Pass)
	b.fault.SetOpMode(faultstore.OpCAS, faultstore.Fail)
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "session", Value: c.cookie})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("failed commit answered %d", w.Code)
	}
	if !errors.Is(writeErr, sessions.ErrResponseAborted) {
		t.Fatalf("the handler's Write after a failed commit returned %v, want ErrResponseAborted", writeErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("ErrorHandler called %d times, want 2: %v", len(got), got)
	}
	for i, want := range []string{"read", "write"} {
		var se *sessions.StorageError
		if !errors.As(got[i], &se) {
			t.Fatalf("ErrorHandler got %T %v, want a *StorageError", got[i], got[i])
		}
		if se.Op != want || se.Storage == "" || !errors.Is(got[i], faultstore.ErrInjected) {
			t.Errorf("StorageError{Op: %q, Storage: %q, Err: %v}, want op %q, the storage's name and the injected error", se.Op, se.Storage, se.Err, want)
		}
	}
}
