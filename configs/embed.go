// Package configs embeds the shipped configuration files: the documented example of every
// key and the one --dev uses, so the binary works from any directory.
package configs

import _ "embed"

// Dev is configs/flowgate.dev.yaml, the configuration of `flowgate serve --dev`.
//
//go:embed flowgate.dev.yaml
var Dev []byte

// Example is configs/flowgate.yaml, every key with its default.
//
//go:embed flowgate.yaml
var Example []byte
