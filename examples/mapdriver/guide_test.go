package mapdriver_test

import (
	"os"
	"strings"
	"testing"
)

// The guide shows this package's code; keep the two the same.
func TestGuideShowsThisCode(t *testing.T) {
	guide, err := os.ReadFile("../../docs/writing-a-driver.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mapdriver.go", "mapdriver_test.go"} {
		code, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(guide), string(code)) {
			t.Errorf("docs/writing-a-driver.md does not show the current %s", name)
		}
	}
}
