package docscheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// knownImports are the package names a fragment may use without importing
// them, and their import paths.
var knownImports = map[string]string{
	"sessions":   "github.com/sessionstorage/sessions",
	"mapdriver":  "github.com/sessionstorage/sessions/examples/mapdriver",
	"sessionctl": "github.com/sessionstorage/sessions/sessionctl",
	"store":      "github.com/eko/gocache/lib/v4/store",
	"context":    "context",
	"errors":     "errors",
	"fmt":        "fmt",
	"http":       "net/http",
	"log":        "log",
	"os":         "os",
	"slog":       "log/slog",
	"time":       "time",
	"url":        "net/url",
}

// readerModule is the docs' stand-in for a reader's module path, and what
// it is read as.
const readerModule, readerModuleHere = "example.com/yourmodule/", "github.com/sessionstorage/sessions/examples/"

// snippet is one ```go block.
type snippet struct {
	file string // relative to the repository root
	line int    // of the opening fence
	info string // the fence's info string
	code string
}

func (s snippet) String() string { return fmt.Sprintf("%s:%d", s.file, s.line) }

// snippets returns the ```go blocks of the given Markdown files.
func snippets(t *testing.T, root string, files []string) []snippet {
	var out []snippet
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		var cur *snippet
		for i, line := range strings.Split(string(data), "\n") {
			trimmed := strings.TrimSpace(line)
			switch {
			case cur == nil && strings.HasPrefix(trimmed, "```"):
				info := strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))
				cur = &snippet{file: f, line: i + 1, info: info}
				if w := strings.Fields(info); len(w) == 0 || w[0] != "go" {
					cur.info = "-" // not Go: skipped
				}
			case cur != nil && trimmed == "```":
				if cur.info != "-" {
					out = append(out, *cur)
				}
				cur = nil
			case cur != nil:
				cur.code += line + "\n"
			}
		}
		if cur != nil {
			t.Errorf("%s:%d: unterminated code block", f, cur.line)
		}
	}
	return out
}

var (
	packageClause = regexp.MustCompile(`(?m)^package\s+(\w+)`)
	importLine    = regexp.MustCompile(`(?m)^import\s+(_\s+|\w+\s+)?"[^"]+"\s*$`)
	// tolerated are the compiler errors a fragment may cause.
	tolerated = regexp.MustCompile(`: (undefined: \w+$|declared and not used|\w+ declared and not used)`)
)

// startsWithPackage reports whether code, after comments and blank lines,
// starts with a package clause.
func startsWithPackage(code string) (name string, ok bool) {
	for _, line := range strings.Split(code, "\n") {
		l := strings.TrimSpace(line)
		if l == "" || strings.HasPrefix(l, "//") {
			continue
		}
		if m := packageClause.FindStringSubmatch(l); m != nil {
			return m[1], true
		}
		return "", false
	}
	return "", false
}

// source turns a snippet into a Go file, and says whether it is a
// fragment (whose undefined free names are tolerated) and a test file.
func source(s snippet) (src string, fragment, test bool, err error) {
	code := strings.ReplaceAll(s.code, readerModule, readerModuleHere)
	if name, ok := startsWithPackage(code); ok {
		return code, false, strings.HasSuffix(name, "_test"), nil
	}
	var imports []string
	body := importLine.ReplaceAllStringFunc(code, func(l string) string {
		imports = append(imports, strings.TrimSpace(l))
		return ""
	})
	for name, path := range knownImports {
		if regexp.MustCompile(`(^|[^\w.])` + name + `\.`).MatchString(body) {
			imports = append(imports, fmt.Sprintf("import %s %q", name, path))
		}
	}
	sort.Strings(imports)
	head := "package snippet\n\n" + strings.Join(imports, "\n") + "\n\n"
	if _, err := parser.ParseFile(token.NewFileSet(), "decl.go", head+body, 0); err == nil {
		return head + body, true, false, nil // declarations
	}
	src = head + "func _() {\n" + body + "}\n"
	if _, err := parser.ParseFile(token.NewFileSet(), "stmt.go", src, 0); err != nil {
		return "", false, false, fmt.Errorf("neither a file, declarations nor statements: %v", err)
	}
	return src, true, false, nil
}

// TestSnippetsCompile compiles every ```go block of README.md and docs/.
func TestSnippetsCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every snippet with the go command")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, d := range docs {
		files = append(files, filepath.Join("docs", filepath.Base(d)))
	}
	all := snippets(t, root, files)
	if len(all) < 5 {
		t.Fatalf("found only %d Go snippets in %v", len(all), files)
	}
	tmp := t.TempDir()
	for i, s := range all {
		t.Run(strings.ReplaceAll(s.String(), "/", "_"), func(t *testing.T) {
			if strings.Contains(" "+s.info+" ", " nocheck ") {
				t.Skip("marked nocheck")
			}
			if problem := compile(t, s, tmp, fmt.Sprintf("snippet%02d", i)); problem != "" {
				t.Errorf("%s", problem)
			}
		})
	}
}

// compile builds snippet s as package pkg (a directory under this one
// that exists only in the overlay), writing its files to tmp, and returns
// what is wrong with it, or "".
func compile(t *testing.T, s snippet, tmp, pkg string) string {
	t.Helper()
	here, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	src, fragment, test, err := source(s)
	if err != nil {
		return fmt.Sprintf("%s: %v", s, err)
	}
	dir := filepath.Join(here, pkg)
	name := "snippet.go"
	if test {
		name = "snippet_test.go"
	}
	real := filepath.Join(tmp, pkg+".go")
	if err := os.WriteFile(real, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(dir, name): real}})
	ov := filepath.Join(tmp, pkg+".json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"build", "-overlay", ov, "-gcflags=-e", "-o", os.DevNull, "./" + filepath.Base(dir)}
	if test {
		args = []string{"test", "-c", "-vet=off", "-gcflags=-e", "-overlay", ov, "-o", os.DevNull, "./" + filepath.Base(dir)}
	}
	cmd := exec.Command("go", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err == nil {
		return ""
	}
	var bad []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(l, "#") || (fragment && tolerated.MatchString(l)) {
			continue
		}
		bad = append(bad, l)
	}
	if len(bad) > 0 || !fragment {
		return fmt.Sprintf("%s: the snippet does not compile (go %s):\n%s\n\nas compiled:\n%s", s, strings.Join(args, " "), out.String(), numbered(src))
	}
	return ""
}

// TestFragmentRules: the rules catch an API that does not exist in a
// fragment, and tolerate its free variables.
func TestFragmentRules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds snippets with the go command")
	}
	tmp := t.TempDir()
	ok := snippet{file: "ok", code: "cfg.Logger = logger\nm, err := sessions.New(cfg)\n"}
	if p := compile(t, ok, tmp, "rulesok"); p != "" {
		t.Errorf("a fragment with free variables failed:\n%s", p)
	}
	bad := snippet{file: "bad", code: "driver.Register(\"map\", mapdriver.Open)\n"}
	if p := compile(t, bad, tmp, "rulesbad"); !strings.Contains(p, "mapdriver.Open") {
		t.Errorf("a fragment calling mapdriver.Open, which does not exist, passed or failed otherwise:\n%s", p)
	}
}

// numbered returns src with line numbers, to read compiler errors by.
func numbered(src string) string {
	var b strings.Builder
	for i, l := range strings.Split(src, "\n") {
		fmt.Fprintf(&b, "%3d  %s\n", i+1, l)
	}
	return b.String()
}
