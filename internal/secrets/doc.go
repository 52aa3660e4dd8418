// Package secrets provides tenant Anthropic API keys to the executor: the Provider contract,
// write-only key metadata with HMAC fingerprints, and a TTL/singleflight Cache in front of it.
package secrets
