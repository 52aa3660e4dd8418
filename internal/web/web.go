package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"
)

// The dashboard, and the SDK: the npm package's module is the one source of the served
// /sdk/flowgate.js (internal/web/npm; TestNPMPackage keeps its CommonJS twin in step).
//
//go:embed static npm/flowgate.mjs npm/flowgate.d.ts
var static embed.FS

// sdkFiles maps the SDK's served names to the package's files.
var sdkFiles = map[string]string{"/sdk/flowgate.js": "npm/flowgate.mjs", "/sdk/flowgate.d.ts": "npm/flowgate.d.ts"}

// CSP is the Content-Security-Policy of everything this package serves. No inline script or
// style anywhere: the dashboard renders engine output, which is untrusted, so a script
// injection must have nowhere to run even if an escaping bug slipped through.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; " +
	"img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// contentType is the type served for a file extension; files of any other extension are not
// served at all (nothing is left to sniffing).
func contentType(ext string) (string, bool) {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".svg":
		return "image/svg+xml", true
	case ".ts":
		return "text/plain; charset=utf-8", true // flowgate.d.ts: for reading and for editors
	case ".json":
		return "application/json", true
	}
	return "", false
}

// file is one embedded asset, hashed once at start for its ETag.
type file struct {
	name  string
	data  []byte
	ctype string
	etag  string
}

// Handler serves /ui/ (the dashboard; /ui/ itself is index.html) and /sdk/ (the SDK and its
// type declarations). Mount it on GET /ui/ and GET /sdk/.
func Handler() http.Handler {
	h, err := newHandler(static)
	if err != nil {
		// The files are compiled in: an error here is a build defect caught by the tests.
		panic(err)
	}
	return h
}

func newFile(name string, data []byte, ctype string) *file {
	sum := sha256.Sum256(data)
	return &file{name: name, data: data, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

type handler struct {
	files    map[string]*file // URL path → file
	sdkExact string           // "/sdk/v1.2.3/": the path that never changes
}

func newHandler(fsys fs.FS) (*handler, error) {
	h := &handler{files: map[string]*file{}}
	err := fs.WalkDir(fsys, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		ctype, ok := contentType(path.Ext(p))
		if !ok || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		h.files[strings.TrimPrefix(p, "static")] = newFile(d.Name(), data, ctype)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: embedded files: %w", err)
	}
	for urlPath, name := range sdkFiles {
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("web: embedded files: %w", err)
		}
		ctype, _ := contentType(path.Ext(urlPath))
		h.files[urlPath] = newFile(path.Base(urlPath), data, ctype)
	}
	if h.files["/ui/index.html"] == nil || h.files["/sdk/flowgate.js"] == nil {
		return nil, fmt.Errorf("web: embedded files: index.html or flowgate.js missing")
	}
	ver, err := SDKVersion(h.files["/sdk/flowgate.js"].data)
	if err != nil {
		return nil, err
	}
	// Versioned paths (DESIGN §19): /sdk/v<major>/ follows compatible releases, /sdk/v<x.y.z>/
	// never changes. Both serve the very files of /sdk/.
	major, _, _ := strings.Cut(ver, ".")
	for p, f := range maps.Clone(h.files) {
		if name, ok := strings.CutPrefix(p, "/sdk/"); ok {
			h.files["/sdk/v"+major+"/"+name] = f
			h.files["/sdk/v"+ver+"/"+name] = f
		}
	}
	h.sdkExact = "/sdk/v" + ver + "/"
	return h, nil
}

// sdkVersionLine is how flowgate.js states its version; the npm package's version is the same.
var sdkVersionLine = regexp.MustCompile(`(?m)^export const VERSION = '(\d+\.\d+\.\d+)';$`)

// SDKVersion reads the semantic version the SDK source declares.
func SDKVersion(src []byte) (string, error) {
	m := sdkVersionLine.FindSubmatch(src)
	if m == nil {
		return "", fmt.Errorf("web: flowgate.js declares no VERSION = 'x.y.z'")
	}
	return string(m[1]), nil
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", CSP)
	hdr.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		problem(w, http.StatusMethodNotAllowed, "method_not_allowed", "only GET and HEAD")
		return
	}
	p := r.URL.Path
	if p == "/ui/" {
		p = "/ui/index.html"
	}
	f := h.files[p]
	if f == nil || path.Clean(p) != p {
		problem(w, http.StatusNotFound, "not_found", "no such file")
		return
	}
	if strings.HasPrefix(p, "/sdk/") {
		// The SDK is public, static and carries no credentials: any site may load it as a
		// module script (which needs CORS).
		hdr.Set("Access-Control-Allow-Origin", "*")
		hdr.Set("Cross-Origin-Resource-Policy", "cross-origin")
	} else {
		hdr.Set("Cross-Origin-Resource-Policy", "same-origin")
		hdr.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()")
	}
	hdr.Set("Content-Type", f.ctype)
	switch {
	case strings.HasPrefix(p, h.sdkExact):
		// An exact version's files never change.
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	case strings.HasPrefix(p, "/sdk/v"):
		// A major version only gets compatible releases; a day bounds how long a fix waits.
		hdr.Set("Cache-Control", "public, max-age=86400, immutable")
	default:
		// The names carry no version, so every use revalidates; the ETag makes that a 304.
		hdr.Set("Cache-Control", "no-cache")
	}
	hdr.Set("ETag", f.etag)
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.data))
}

func problem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type": "https://flowgate.dev/errors/" + code, "title": http.StatusText(status),
		"status": status, "code": code, "detail": detail,
	})
}
