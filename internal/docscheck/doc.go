// Package docscheck holds a test that compiles the Go snippets of README.md
// and docs/*.md against this module, so that a snippet cannot drift from
// the API again. It has no code of its own.
//
// The rules, by the kind of ```go block:
//
//   - A block that starts (after comments) with a package clause is a
//     complete file. It is built as a package of its own; a block of a
//     package ending in _test is compiled as a test (go test -c).
//   - Any other block is a fragment: statements, or declarations. It goes
//     into a package of its own, declarations at the top level, statements
//     in a function body, with imports added for the package names it uses
//     (knownImports). Errors about names the fragment does not define
//     itself ("undefined: logger", the free variables a fragment takes for
//     granted) and "declared and not used" are tolerated; every other error
//     (an API that does not exist, wrong types or arguments) fails.
//   - Import paths under example.com/yourmodule/ (the docs' stand-in for a
//     reader's module) are read as under this module's examples/: the
//     docs' mapdriver is examples/mapdriver.
//   - A block whose fence info string has the word "nocheck" (```go nocheck)
//     is skipped: for snippets that are deliberately incomplete or wrong.
//
// The snippets are compiled in place, in directories under this one that
// exist only in a go build -overlay, so they import this module's packages
// as any code in it does and write nothing into the tree.
package docscheck
