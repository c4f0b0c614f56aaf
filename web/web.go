package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed console
var content embed.FS

// FS is the console's content, rooted at the directory holding index.html (the
// page for the signed out), templates/ (the pages, html/template files defining
// "content" over base.html's "base") and static/ (stylesheet and vendored scripts,
// see static/VENDORED.md).
var FS fs.FS = mustSub(content, "console")

// Templates and Static are FS's templates/ and static/.
var (
	Templates = mustSub(FS, "templates")
	Static    = mustSub(FS, "static")
)

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // dir is a literal embedded above; this cannot fail at run time
	}
	return sub
}

// Handler serves the console's index page. It answers GET and HEAD only; any other
// path under it is 404. It is safe for concurrent use.
func Handler() http.Handler {
	index, err := fs.ReadFile(FS, "index.html")
	if err != nil {
		panic(err) // embedded at build time; a missing file is a build defect
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path != "/" && r.URL.Path != "/index.html" {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'")
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(index)
	})
}
