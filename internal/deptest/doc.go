// Package deptest holds the import-boundary test: which internal packages may depend on which
// (only cmd/ wires the store into the rest).
package deptest
