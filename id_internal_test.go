package sessions

import "testing"

func TestValidID(t *testing.T) {
	for i := 0; i < 1000; i++ {
		if id := newID(); !validID(id) {
			t.Fatalf("newID() = %q is not valid", id)
		}
	}
	for _, bad := range []string{"", "short", newID() + "x", newID()[:42] + "!", newID()[:42] + "B"} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}
