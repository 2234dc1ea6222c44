package main

import (
	"os"
	"strings"
	"testing"
)

// The README's quickstart is this file; keep the two the same.
func TestREADMEShowsThisProgram(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), string(code)) {
		t.Error("README.md's quickstart differs from examples/quickstart/main.go")
	}
}
