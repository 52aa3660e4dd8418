// Package storetest gives tests a fresh, isolated store on SQLite (a temp file) and on the real
// PostgreSQL (a throw-away schema), so every package can test against both drivers.
package storetest
