package server

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

// openAPIDoc is the OpenAPI 3.1 description of the public listener (DESIGN §19). It is
// written by hand and kept honest by openapi_test.go, which fails when a route registered in
// Public or a field of tenant.Limits is missing from it, or when it stops validating against
// the OpenAPI 3.1 schema.
//
//go:embed openapi.json
var openAPIDoc []byte

// openAPIETag is computed once: the document only changes with the binary.
var openAPIETag = func() string {
	sum := sha256.Sum256(openAPIDoc)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}()

// handleOpenAPI serves the document. It is public: it describes the API, not any tenant's
// data. The ETag lets tools that poll it (client generators, the dashboard) revalidate with a
// 304 instead of downloading it again.
func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("ETag", openAPIETag)
		// ServeContent answers If-None-Match (304) and HEAD; a zero modtime keeps
		// Last-Modified out, so the ETag is the only validator.
		http.ServeContent(w, r, "openapi.json", time.Time{}, bytes.NewReader(openAPIDoc))
	})
}
