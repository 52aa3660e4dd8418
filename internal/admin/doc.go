// Package admin runs the administrative use-cases once, for the HTTP API and the CLI alike:
// validate, record (fail-closed), act, record the outcome, tell running processes.
package admin
