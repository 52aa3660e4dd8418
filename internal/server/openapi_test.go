package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/flowgate/flowgate/internal/audit"
	"github.com/flowgate/flowgate/internal/auth"
	"github.com/flowgate/flowgate/internal/tenant"
	"github.com/flowgate/flowgate/internal/validation"
)

// The tests below keep openapi.json from drifting away from the server: every route of
// Public is in it and nothing else, every operation answers as documented, every tenant limit
// is described with the bounds validation enforces, every problem code is documented, and the
// document is valid OpenAPI 3.1 with valid JSON Schemas.

const (
	// oasDocURL is where the document is registered with the schema compiler, so that its
	// "#/components/..." references resolve.
	oasDocURL = "https://flowgate.dev/v1/openapi.json"
	// oasSchemaFile is the official OpenAPI 3.1 schema (see testdata/README.md).
	oasSchemaFile = "testdata/openapi-3.1-schema.json"
	// oasMetaSchema is the JSON Schema dialect of OpenAPI 3.1 Schema Objects; the compiler
	// ships it, so no network is needed.
	oasMetaSchema = "https://json-schema.org/draft/2020-12/schema"
	// oasDocsFile is where the problem type URIs are documented (DESIGN §19).
	oasDocsFile = "../../docs/api.md"
)

// oasUndocumented are registered routes that are deliberately not API operations: the
// dashboard's and the SDK's static files.
var oasUndocumented = map[string]string{
	"GET /ui/":  "the dashboard's static files",
	"GET /sdk/": "the JavaScript SDK's static files",
}

// oasMethods are the operation keys of an OpenAPI path item.
var oasMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// oasLoad decodes the embedded document the way the schema library expects (numbers as
// json.Number, so integer bounds are compared exactly).
func oasLoad(t *testing.T) map[string]any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(openAPIDoc))
	if err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	doc, ok := v.(map[string]any)
	if !ok {
		t.Fatal("openapi.json is not a JSON object")
	}
	return doc
}

// oasGet follows keys from v; it fails the test when one is missing.
func oasGet(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for i, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("openapi.json: %s is not an object", strings.Join(keys[:i], "."))
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("openapi.json: %s is missing", strings.Join(keys[:i+1], "."))
		}
	}
	return v
}

// oasObject is oasGet for a value that must be an object.
func oasObject(t *testing.T, v any, keys ...string) map[string]any {
	t.Helper()
	m, ok := oasGet(t, v, keys...).(map[string]any)
	if !ok {
		t.Fatalf("openapi.json: %s is not an object", strings.Join(keys, "."))
	}
	return m
}

// oasPointer builds the JSON pointer of tokens.
func oasPointer(tokens ...string) string {
	var b strings.Builder
	for _, tok := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(tok))
	}
	return b.String()
}

// oasURL is the location of the schema at ptr in the document, for the compiler. It unescapes
// the fragment before splitting the pointer, so escaping "/" too is safe.
func oasURL(ptr string) string {
	return oasDocURL + "#" + url.PathEscape(ptr)
}

// oasOperations lists the documented operations as "METHOD /path".
func oasOperations(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	ops := map[string]map[string]any{}
	for path, item := range oasObject(t, doc, "paths") {
		pi, ok := item.(map[string]any)
		if !ok {
			t.Fatalf("openapi.json: paths.%s is not an object", path)
		}
		for _, m := range oasMethods {
			if op, ok := pi[m].(map[string]any); ok {
				ops[strings.ToUpper(m)+" "+path] = op
			}
		}
	}
	return ops
}

// oasRegistered is what Public registers, read from routes.go: the routes with a method, and
// for each method-less catch-all answered by methodNotAllowed, the methods its Allow names.
type oasRegistered struct {
	routes map[string]token.Position // "METHOD /openapi/path" → where it is registered
	allow  map[string][]string       // "/openapi/path" → Allow methods
}

// oasParseRoutes reads routes.go's func Public. The source is read rather than the mux
// because http.ServeMux cannot list its patterns; every registration must be a literal
// pattern so that none escapes the comparison.
func oasParseRoutes(t *testing.T, file string) oasRegistered {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := oasRegistered{routes: map[string]token.Position{}, allow: map[string][]string{}}
	var public *ast.FuncDecl
	for _, decl := range f.Decls {
		if fd, ok := decl.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == "Public" {
			public = fd
		}
	}
	if public == nil {
		t.Fatalf("%s: no func Public", file)
	}
	ast.Inspect(public.Body, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "mux" {
			return true
		}
		pos := fset.Position(call.Pos())
		pattern, ok := oasStringLit(call.Args[0])
		if !ok {
			t.Errorf("%s: the route pattern is not a string literal; this test cannot compare it with openapi.json", pos)
			return true
		}
		method, path, hasMethod := strings.Cut(pattern, " ")
		if !hasMethod {
			method, path = "", pattern
		}
		if !strings.HasPrefix(path, "/") {
			t.Errorf("%s: pattern %q names a host; openapi.json describes one server", pos, pattern)
			return true
		}
		if method == "" {
			if path == "/" {
				return true // the fallback 404
			}
			allow, ok := oasMethodNotAllowed(call.Args[1])
			if !ok {
				t.Errorf("%s: catch-all %q is not methodNotAllowed(\"…\"); describe it in openapi.json and teach this test", pos, pattern)
				return true
			}
			out.allow[oasPath(path)] = allow
			return true
		}
		key := method + " " + oasPath(path)
		if strings.HasSuffix(path, "/") && path != "/" && oasUndocumented[key] == "" {
			t.Errorf("%s: subtree pattern %q cannot be an OpenAPI path", pos, pattern)
		}
		if prev, dup := out.routes[key]; dup {
			t.Errorf("%s: %s registered twice (first at %s)", pos, key, prev)
		}
		out.routes[key] = pos
		return true
	})
	return out
}

func oasStringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// oasMethodNotAllowed reads methodNotAllowed("GET, POST").
func oasMethodNotAllowed(e ast.Expr) ([]string, bool) {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 1 {
		return nil, false
	}
	if fn, ok := call.Fun.(*ast.Ident); !ok || fn.Name != "methodNotAllowed" {
		return nil, false
	}
	s, ok := oasStringLit(call.Args[0])
	if !ok {
		return nil, false
	}
	var methods []string
	for _, m := range strings.Split(s, ",") {
		methods = append(methods, strings.TrimSpace(m))
	}
	sort.Strings(methods)
	return methods, true
}

// oasPath turns a ServeMux path into an OpenAPI path: "/{$}" is the exact path "/", and a
// "{name...}" wildcard is the parameter {name}.
func oasPath(p string) string {
	p = strings.TrimSuffix(p, "{$}")
	return strings.ReplaceAll(p, "...}", "}")
}

// oasCompare lists what registered has and documented lacks, and the reverse.
func oasCompare(registered map[string]token.Position, documented map[string]map[string]any) (missing, extra []string) {
	for k, pos := range registered {
		if _, ok := documented[k]; !ok && oasUndocumented[k] == "" {
			missing = append(missing, fmt.Sprintf("%s (%s)", k, pos))
		}
	}
	for k := range documented {
		if _, ok := registered[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

func TestOpenAPICoversRoutes(t *testing.T) {
	reg := oasParseRoutes(t, "routes.go")
	ops := oasOperations(t, oasLoad(t))
	if len(reg.routes) < 10 {
		t.Fatalf("read only %d routes from routes.go; the parser no longer understands it", len(reg.routes))
	}
	missing, extra := oasCompare(reg.routes, ops)
	for _, m := range missing {
		t.Errorf("route %s is registered in Public but missing from openapi.json", m)
	}
	for _, e := range extra {
		t.Errorf("openapi.json documents %s, which Public does not register", e)
	}
	// The Allow header of a 405 must name exactly the path's operations.
	for path, allow := range reg.allow {
		var methods []string
		for k := range reg.routes {
			if m, p, _ := strings.Cut(k, " "); p == path {
				methods = append(methods, m)
			}
		}
		sort.Strings(methods)
		if !slices.Equal(methods, allow) {
			t.Errorf("%s: methodNotAllowed says Allow %v, but the registered methods are %v", path, allow, methods)
		}
	}
}

// TestOpenAPIRouteComparisonFails proves the comparison is not vacuous: a registration
// missing from the document, and a documented operation that is not registered, are reported.
func TestOpenAPIRouteComparisonFails(t *testing.T) {
	src := `package server
func Public(d *Deps) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", handleHealth())
	mux.Handle("GET /v1/admin/widgets/{id}", nil)
	mux.Handle("/v1/admin/widgets/{id}", methodNotAllowed("GET"))
	mux.Handle("GET /ui/", d.UI)
	mux.Handle("/", nil)
	return mux
}`
	file := filepath.Join(t.TempDir(), "routes.go")
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := oasParseRoutes(t, file)
	documented := map[string]map[string]any{"GET /healthz": {}, "DELETE /v1/admin/gone": {}}
	missing, extra := oasCompare(reg.routes, documented)
	if len(missing) != 1 || !strings.HasPrefix(missing[0], "GET /v1/admin/widgets/{id} ") {
		t.Errorf("missing = %v, want the widgets route", missing)
	}
	if !slices.Equal(extra, []string{"DELETE /v1/admin/gone"}) {
		t.Errorf("extra = %v, want the unregistered operation", extra)
	}
	if got := reg.allow["/v1/admin/widgets/{id}"]; !slices.Equal(got, []string{"GET"}) {
		t.Errorf("allow = %v", got)
	}
}

// oasCompiler returns a compiler that knows the document, for compiling the schemas in it.
func oasCompiler(t *testing.T, doc map[string]any) *jsonschema.Compiler {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(oasDocURL, doc); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestOpenAPIValidates validates the document against the official OpenAPI 3.1 schema.
func TestOpenAPIValidates(t *testing.T) {
	doc := oasLoad(t)
	if v := oasGet(t, doc, "openapi"); v != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", v)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	f, err := os.Open(oasSchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := schemaDoc.(map[string]any)["$id"].(string)
	if !strings.HasPrefix(id, "https://spec.openapis.org/oas/3.1/schema/") {
		t.Fatalf("%s has $id %q; it is not the OpenAPI 3.1 schema", oasSchemaFile, id)
	}
	if err := c.AddResource(id, schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3.1 document:\n%v", err)
	}
	// The validator must be able to say no, or the check above proves nothing.
	for name, mutate := range map[string]func(map[string]any){
		"unknown top-level field": func(d map[string]any) { d["paths2"] = map[string]any{} },
		"info without title":      func(d map[string]any) { delete(d["info"].(map[string]any), "title") },
		"unknown security scheme type": func(d map[string]any) {
			d["components"].(map[string]any)["securitySchemes"].(map[string]any)["bearerAuth"].(map[string]any)["type"] = "magic"
		},
		"wrong openapi version": func(d map[string]any) { d["openapi"] = "3.0.3" },
	} {
		bad := oasLoad(t)
		mutate(bad)
		if err := sch.Validate(bad); err == nil {
			t.Errorf("the OpenAPI schema accepts a document with %s", name)
		}
	}
}

// oasSchemaPointers finds every Schema Object of the document: components.schemas and the
// "schema" of parameters, headers and media types.
func oasSchemaPointers(doc map[string]any) map[string]any {
	out := map[string]any{}
	var walk func(v any, path []string)
	walk = func(v any, path []string) {
		switch v := v.(type) {
		case map[string]any:
			for k, child := range v {
				p := append(slices.Clone(path), k)
				switch {
				case len(path) == 2 && path[0] == "components" && path[1] == "schemas":
					out[oasPointer(p...)] = child
				case k == "schema":
					out[oasPointer(p...)] = child
				case k == "example" || k == "examples" || k == "value":
					// Example values are data, not Schema Objects.
				default:
					walk(child, p)
				}
			}
		case []any:
			for i, child := range v {
				walk(child, append(slices.Clone(path), strconv.Itoa(i)))
			}
		}
	}
	walk(doc, nil)
	return out
}

// TestOpenAPISchemas checks what the OpenAPI schema leaves open: every Schema Object is valid
// JSON Schema 2020-12, its references resolve, and every example in the document validates
// against the schema it illustrates.
func TestOpenAPISchemas(t *testing.T) {
	doc := oasLoad(t)
	c := oasCompiler(t, doc)
	meta, err := c.Compile(oasMetaSchema)
	if err != nil {
		t.Fatal(err)
	}
	ptrs := oasSchemaPointers(doc)
	if len(ptrs) < 30 {
		t.Fatalf("found only %d schemas; the walk is broken", len(ptrs))
	}
	compiled := map[string]*jsonschema.Schema{}
	for ptr, s := range ptrs {
		if err := meta.Validate(s); err != nil {
			t.Errorf("%s is not a valid JSON Schema: %v", ptr, err)
			continue
		}
		sch, err := c.Compile(oasURL(ptr))
		if err != nil {
			t.Errorf("%s does not compile: %v", ptr, err)
			continue
		}
		compiled[ptr] = sch
		obj, _ := s.(map[string]any)
		exs, _ := obj["examples"].([]any)
		for i, ex := range exs {
			if err := sch.Validate(ex); err != nil {
				t.Errorf("%s: examples[%d] does not match the schema: %v", ptr, i, err)
			}
		}
		if def, ok := obj["default"]; ok {
			if err := sch.Validate(def); err != nil {
				t.Errorf("%s: the default does not match the schema: %v", ptr, err)
			}
		}
	}
	// Media type examples: "example" and "examples.*.value" next to "schema".
	for ptr := range ptrs {
		mediaPtr, ok := strings.CutSuffix(ptr, "/schema")
		if !ok || compiled[ptr] == nil {
			continue
		}
		media := oasResolvePointer(t, doc, mediaPtr)
		var examples []any
		if ex, ok := media["example"]; ok {
			examples = append(examples, ex)
		}
		if exs, ok := media["examples"].(map[string]any); ok {
			for _, ex := range exs {
				examples = append(examples, oasGet(t, ex, "value"))
			}
		}
		for _, ex := range examples {
			if err := compiled[ptr].Validate(ex); err != nil {
				t.Errorf("%s: an example does not match the schema: %v", mediaPtr, err)
			}
		}
	}
}

// oasResolvePointer returns the object at a pointer made by oasPointer.
func oasResolvePointer(t *testing.T, doc map[string]any, ptr string) map[string]any {
	t.Helper()
	var v any = doc
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		switch c := v.(type) {
		case map[string]any:
			v = c[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(c) {
				t.Fatalf("openapi.json: %s: bad index %q", ptr, tok)
			}
			v = c[i]
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("openapi.json: %s is not an object", ptr)
	}
	return m
}

// oasRef follows a "$ref" into the document's components.
func oasRef(t *testing.T, doc map[string]any, v map[string]any) map[string]any {
	t.Helper()
	ref, ok := v["$ref"].(string)
	if !ok {
		return v
	}
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		t.Fatalf("openapi.json: $ref %q is not local", ref)
	}
	return oasObject(t, doc, strings.Split(rest, "/")...)
}

// TestOpenAPILimits fails when a field of tenant.Limits (the stored and answered shape) or of
// validation.TenantLimits (the accepted shape) is missing from the document's TenantLimits,
// or is described without its type and the bounds validation enforces.
func TestOpenAPILimits(t *testing.T) {
	doc := oasLoad(t)
	schema := oasObject(t, doc, "components", "schemas", "TenantLimits")
	stored := oasJSONFields(t, reflect.TypeFor[tenant.Limits]())
	accepted := oasJSONFields(t, reflect.TypeFor[validation.TenantLimits]())
	if len(stored) < 7 {
		t.Fatalf("tenant.Limits has %d json fields; reflection is broken", len(stored))
	}
	for name, f := range stored {
		if _, ok := accepted[name]; !ok {
			t.Errorf("tenant.Limits.%s (%q) has no counterpart in validation.TenantLimits", f.Name, name)
		}
	}
	if schema["additionalProperties"] != false {
		t.Error("TenantLimits must refuse unknown fields, as the server's strict decoder does")
	}
	for _, p := range oasCheckLimits(t, schema, stored, accepted) {
		t.Error(p)
	}
	// docs/api.md's table of limits names every field, and only those.
	guide, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := regexp.MustCompile("(?m)^\\| `([a-zA-Z]+)` \\| ").FindAllStringSubmatch(string(guide), -1)
	inTable := map[string]bool{}
	for _, r := range rows {
		inTable[r[1]] = true
	}
	for name := range stored {
		if !inTable[name] {
			t.Errorf("docs/api.md's table of tenant limits lacks %q", name)
		}
	}
	for name := range inTable {
		if _, ok := stored[name]; !ok && strings.ToLower(name) != name {
			t.Errorf("docs/api.md's table of tenant limits names %q, which tenant.Limits does not have", name)
		}
	}
}

// oasCheckLimits lists what schema lacks to describe the limit fields: stored (json name →
// field) must be exactly its properties, each described with the type and the bounds of the
// validate tag of the same field in accepted.
func oasCheckLimits(t *testing.T, schema map[string]any, stored, accepted map[string]reflect.StructField) []string {
	t.Helper()
	var problems []string
	props, _ := schema["properties"].(map[string]any)
	for name := range props {
		if _, ok := stored[name]; !ok {
			problems = append(problems, fmt.Sprintf("openapi.json documents limit %q, which tenant.Limits does not have", name))
		}
	}
	for name, f := range stored {
		p, ok := props[name].(map[string]any)
		if !ok {
			problems = append(problems, fmt.Sprintf("limit %q (tenant.Limits.%s) is missing from openapi.json's TenantLimits", name, f.Name))
			continue
		}
		if d, _ := p["description"].(string); len(d) < 20 {
			problems = append(problems, fmt.Sprintf("limit %q needs a description", name))
		}
		if got, want := p["type"], oasJSONType(f.Type); got != want {
			problems = append(problems, fmt.Sprintf("limit %q: type %v, want %v (Go %s)", name, got, want, f.Type))
		}
		rules, ok := accepted[name]
		if !ok {
			continue
		}
		for kw, want := range oasLimitBounds(t, rules) {
			if got := oasNumber(p[kw]); got == nil || *got != want {
				problems = append(problems, fmt.Sprintf("limit %q: %s = %v, want %v (from the validate tag %q)", name, kw, p[kw], want, rules.Tag.Get("validate")))
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// TestOpenAPILimitsCheckCanFail proves oasCheckLimits reports each kind of drift.
func TestOpenAPILimitsCheckCanFail(t *testing.T) {
	type limits struct {
		Agents *int     `json:"agents" validate:"omitempty,between=1:20"`
		Budget *float64 `json:"budget" validate:"omitempty,budgetusd"`
		Names  []string `json:"names" validate:"omitempty,max=4,unique,dive,strategy"`
	}
	fields := oasJSONFields(t, reflect.TypeFor[limits]())
	good := func() map[string]any {
		return map[string]any{"properties": map[string]any{
			"agents": map[string]any{"type": "integer", "minimum": json.Number("1"), "maximum": json.Number("20"), "description": "agents of one swarm, at most"},
			"budget": map[string]any{"type": "number", "minimum": json.Number("0"), "maximum": json.Number("1000000"), "description": "dollars per UTC day, 0 = no cap"},
			"names":  map[string]any{"type": "array", "maxItems": json.Number("4"), "uniqueItems": true, "description": "strategies the tenant may use"},
		}}
	}
	prop := func(s map[string]any, name string) map[string]any {
		return s["properties"].(map[string]any)[name].(map[string]any)
	}
	tests := []struct {
		name   string
		mutate func(map[string]any)
		want   string
	}{
		{"complete", func(map[string]any) {}, ""},
		{"missing field", func(s map[string]any) { delete(s["properties"].(map[string]any), "budget") }, `limit "budget" (tenant.Limits.Budget) is missing`},
		{"unknown field", func(s map[string]any) { s["properties"].(map[string]any)["old"] = map[string]any{} }, `documents limit "old"`},
		{"no description", func(s map[string]any) { delete(prop(s, "agents"), "description") }, `limit "agents" needs a description`},
		{"wrong type", func(s map[string]any) { prop(s, "budget")["type"] = "integer" }, `limit "budget": type integer, want number`},
		{"wrong maximum", func(s map[string]any) { prop(s, "agents")["maximum"] = json.Number("21") }, `limit "agents": maximum = 21, want 20`},
		{"no minimum", func(s map[string]any) { delete(prop(s, "budget"), "minimum") }, `limit "budget": minimum`},
		{"not unique", func(s map[string]any) { delete(prop(s, "names"), "uniqueItems") }, `limit "names": uniqueItems`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good()
			tt.mutate(s)
			problems := oasCheckLimits(t, s, fields, fields)
			switch {
			case tt.want == "" && len(problems) > 0:
				t.Errorf("problems %q in a complete schema", problems)
			case tt.want != "" && (len(problems) != 1 || !strings.Contains(problems[0], tt.want)):
				t.Errorf("problems %q, want one containing %q", problems, tt.want)
			}
		})
	}
}

// oasJSONFields maps json names to the fields of a struct.
func oasJSONFields(t *testing.T, typ reflect.Type) map[string]reflect.StructField {
	t.Helper()
	out := map[string]reflect.StructField{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			t.Fatalf("%s.%s has no json name", typ, f.Name)
		}
		out[name] = f
	}
	return out
}

func oasJSONType(typ reflect.Type) string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch typ.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return "object"
}

// oasLimitBounds translates a field's validate tag into the JSON Schema keywords that must
// describe it. A rule this function does not know fails the test, so a new rule cannot leave
// the document behind.
func oasLimitBounds(t *testing.T, f reflect.StructField) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	rules := strings.Split(f.Tag.Get("validate"), ",")
	for i, rule := range rules {
		name, param, _ := strings.Cut(rule, "=")
		switch name {
		case "omitempty", "dive":
		case "between":
			lo, hi, _ := strings.Cut(param, ":")
			out["minimum"], out["maximum"] = oasAtof(t, lo), oasAtof(t, hi)
		case "budgetusd":
			out["minimum"], out["maximum"] = 0, validation.MaxBudgetUSDPerDay
		case "tokensperday":
			out["minimum"], out["maximum"] = 0, validation.MaxTokensPerDay
		case "max":
			if slices.Contains(rules[:i], "dive") {
				t.Fatalf("%s: max after dive is not handled", f.Name)
			}
			out["maxItems"] = oasAtof(t, param)
		case "unique":
			out["uniqueItems"] = 1 // compared as a boolean below
		case "maxagents", "strategy":
			// Bounded by the server's configuration (limits.max_agents, the engine
			// profile's strategy enum): described in words, not as a fixed keyword.
		default:
			t.Fatalf("%s: validate rule %q is unknown to this test; document its bound in openapi.json and add it here", f.Name, rule)
		}
	}
	return out
}

func oasAtof(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// oasNumber reads a JSON number (or true, as 1) from the document.
func oasNumber(v any) *float64 {
	var f float64
	switch v := v.(type) {
	case json.Number:
		var err error
		if f, err = v.Float64(); err != nil {
			return nil
		}
	case bool:
		if !v {
			return nil
		}
		f = 1
	default:
		return nil
	}
	return &f
}

// TestOpenAPIPermissions checks that every authenticated operation states its permissions and
// that they are the gateway's.
func TestOpenAPIPermissions(t *testing.T) {
	doc := oasLoad(t)
	known := []string{auth.PermSwarmExecute, auth.PermTaskAdmin, auth.PermTenantAdmin, auth.PermAuditRead, auth.PermPlatformAdmin}
	var enum []string
	for _, v := range oasGet(t, doc, "components", "schemas", "Permission", "enum").([]any) {
		enum = append(enum, v.(string))
	}
	if !slices.Equal(enum, known) {
		t.Errorf("Permission enum = %v, want %v", enum, known)
	}
	ids := map[string]string{}
	for key, op := range oasOperations(t, doc) {
		id, _ := op["operationId"].(string)
		if id == "" {
			t.Errorf("%s has no operationId", key)
		} else if prev, dup := ids[id]; dup {
			t.Errorf("%s and %s share operationId %q", key, prev, id)
		}
		ids[id] = key
		if s, _ := op["summary"].(string); s == "" {
			t.Errorf("%s has no summary", key)
		}
		if sec, ok := op["security"].([]any); ok && len(sec) == 0 {
			if _, ok := op["x-permissions"]; ok {
				t.Errorf("%s is public but lists x-permissions", key)
			}
			continue
		}
		perms, ok := op["x-permissions"].([]any)
		if !ok {
			t.Errorf("%s needs a token but has no x-permissions (an empty list means any valid token)", key)
			continue
		}
		for _, p := range perms {
			if s, _ := p.(string); !slices.Contains(known, s) {
				t.Errorf("%s: x-permissions names %v, which is not a permission", key, p)
			}
		}
		if strings.Contains(key, " /v1/admin/") {
			if len(perms) == 0 {
				t.Errorf("%s is an admin operation with no permission", key)
			}
		}
	}
}

// oasProblemCodes collects every problem code the gateway can answer with: the protocol's
// Code* constants and the codes written literally (or through a package constant) by
// writeProblem and writeProblemExt in this package.
func oasProblemCodes(t *testing.T) map[string]string {
	t.Helper()
	codes := map[string]string{}
	fset := token.NewFileSet()
	consts := map[string]string{}
	collectConsts := func(f *ast.File) {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := oasStringLit(vs.Values[i]); ok {
							consts[n.Name] = s
						}
					}
				}
			}
		}
	}
	proto, err := parser.ParseFile(fset, "../protocol/protocol.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	collectConsts(proto)
	for name, v := range consts {
		if strings.HasPrefix(name, "Code") {
			codes[v] = "protocol." + name
		}
	}
	protoConsts := consts
	consts = map[string]string{}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var parsed []*ast.File
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		collectConsts(f)
		parsed = append(parsed, f)
	}
	for _, f := range parsed {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			fn, ok := call.Fun.(*ast.Ident)
			if !ok || (fn.Name != "writeProblem" && fn.Name != "writeProblemExt") || len(call.Args) < 4 {
				return true
			}
			pos := fset.Position(call.Pos())
			switch arg := call.Args[3].(type) {
			case *ast.BasicLit:
				s, _ := oasStringLit(arg)
				codes[s] = pos.String()
			case *ast.Ident:
				if s, ok := consts[arg.Name]; ok {
					codes[s] = pos.String()
				}
				// Otherwise a variable (code, rf.code): its values are constants found elsewhere.
			case *ast.SelectorExpr:
				if x, ok := arg.X.(*ast.Ident); ok && x.Name == "protocol" {
					if _, ok := protoConsts[arg.Sel.Name]; !ok {
						t.Errorf("%s: protocol.%s is not a string constant of protocol.go", pos, arg.Sel.Name)
					}
				}
			}
			return true
		})
	}
	return codes
}

// TestOpenAPIProblemCodes fails when a problem code is missing from the Problem schema's
// examples or from docs/api.md, where each code has the anchor its type URI names.
func TestOpenAPIProblemCodes(t *testing.T) {
	doc := oasLoad(t)
	codes := oasProblemCodes(t)
	for _, c := range []string{"not_found", "method_not_allowed", "conflict", "validation_failed"} {
		if _, ok := codes[c]; !ok {
			t.Fatalf("code %q was not found in the source; the scan is broken", c)
		}
	}
	documented := map[string]bool{}
	for _, v := range oasGet(t, doc, "components", "schemas", "Problem", "properties", "code", "examples").([]any) {
		documented[v.(string)] = true
	}
	guide, err := os.ReadFile(oasDocsFile)
	if err != nil {
		t.Fatal(err)
	}
	for code, where := range codes {
		if !documented[code] {
			t.Errorf("code %q (%s) is missing from openapi.json's Problem.code examples", code, where)
		}
		if !bytes.Contains(guide, []byte(`id="`+code+`"`)) {
			t.Errorf("code %q (%s) has no anchor in %s (https://flowgate.dev/errors/%s)", code, where, oasDocsFile, code)
		}
	}
	for code := range documented {
		if _, ok := codes[code]; !ok {
			t.Errorf("openapi.json lists code %q, which the gateway never answers", code)
		}
	}
}

// oasNopAuditor accepts every record: the probe below checks routing, not auditing.
type oasNopAuditor struct{}

func (oasNopAuditor) Record(context.Context, audit.Record) error { return nil }

// oasPublic is Public with only what an unauthenticated request reaches.
func oasPublic() http.Handler {
	return Public(&Deps{
		Logger: slog.New(slog.DiscardHandler),
		Audit:  oasNopAuditor{},
		UI:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }),
	})
}

var oasParam = regexp.MustCompile(`\{[^}]+\}`)

// TestOpenAPIOperationsAnswer sends every documented operation, without credentials, to the
// real handler: it must be routed (not the fallback 404, not a 405), answer a status the
// document lists for it, and its body must match the documented schema.
func TestOpenAPIOperationsAnswer(t *testing.T) {
	doc := oasLoad(t)
	c := oasCompiler(t, doc)
	h := oasPublic()
	for key, op := range oasOperations(t, doc) {
		t.Run(key, func(t *testing.T) {
			method, path, _ := strings.Cut(key, " ")
			req := httptest.NewRequest(method, oasParam.ReplaceAllString(path, "acme"), nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			status := strconv.Itoa(rec.Code)
			body := rec.Body.Bytes()
			if rec.Code == http.StatusMethodNotAllowed {
				t.Fatalf("405: the route does not serve %s", method)
			}
			if rec.Code == http.StatusNotFound && bytes.Contains(body, []byte(`"no such route"`)) {
				t.Fatalf("the fallback answered: the route is not registered")
			}
			responses := oasObject(t, op, "responses")
			resp, ok := responses[status].(map[string]any)
			if !ok {
				t.Fatalf("answered %d, which openapi.json does not list (%s)", rec.Code, body)
			}
			resp = oasRef(t, doc, resp)
			ct, _, _ := mime.ParseMediaType(rec.Header().Get("Content-Type"))
			content, _ := resp["content"].(map[string]any)
			if len(body) == 0 || content == nil {
				return // e.g. a redirect, whose short HTML body net/http adds
			}
			if _, ok := content[ct]; !ok {
				t.Fatalf("answered %d with Content-Type %q; openapi.json lists %v", rec.Code, ct, slices.Sorted(maps.Keys(content)))
			}
			schemaPtr := oasPointer("paths", path, strings.ToLower(method), "responses", status, "content", ct, "schema")
			if ref, ok := responses[status].(map[string]any)["$ref"].(string); ok {
				name := strings.TrimPrefix(ref, "#/components/responses/")
				schemaPtr = oasPointer("components", "responses", name, "content", ct, "schema")
			}
			sch, err := c.Compile(oasURL(schemaPtr))
			if err != nil {
				t.Fatal(err)
			}
			v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("the body is not JSON: %v", err)
			}
			if err := sch.Validate(v); err != nil {
				t.Errorf("the %d body does not match the documented schema: %v\n%s", rec.Code, err, body)
			}
		})
	}
}

// TestOpenAPIServed checks the route that serves the document.
func TestOpenAPIServed(t *testing.T) {
	h := oasPublic()
	get := func(t *testing.T, method string, hdr map[string]string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, "/v1/openapi.json", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	first := get(t, http.MethodGet, nil)
	etag := first.Header().Get("ETag")
	tests := []struct {
		name     string
		method   string
		hdr      map[string]string
		status   int
		wantBody bool
	}{
		{"get", http.MethodGet, nil, http.StatusOK, true},
		{"head", http.MethodHead, nil, http.StatusOK, false},
		{"revalidate", http.MethodGet, map[string]string{"If-None-Match": etag}, http.StatusNotModified, false},
		{"stale etag", http.MethodGet, map[string]string{"If-None-Match": `"other"`}, http.StatusOK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := get(t, tt.method, tt.hdr)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get("ETag"); got != etag || !strings.HasPrefix(etag, `"`) {
				t.Errorf("ETag %q, want the same strong tag %q", got, etag)
			}
			if got := rec.Header().Get("Cache-Control"); !strings.Contains(got, "max-age=") {
				t.Errorf("Cache-Control %q", got)
			}
			if tt.status == http.StatusNotModified {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if tt.wantBody && !bytes.Equal(rec.Body.Bytes(), openAPIDoc) {
				t.Errorf("the body is not the embedded document")
			}
			if !tt.wantBody && rec.Body.Len() != 0 {
				t.Errorf("HEAD answered a body")
			}
		})
	}
	var doc map[string]any
	if err := json.NewDecoder(io.LimitReader(first.Body, 1<<20)).Decode(&doc); err != nil || doc["openapi"] != "3.1.0" {
		t.Errorf("served document: %v, openapi %v", err, doc["openapi"])
	}
}
