// Package smtest is an in-process AWS Secrets Manager for tests: an httptest server speaking
// the service's JSON 1.1 protocol, with SigV4 checks, request records and failure injection.
package smtest
