package e2e

import (
	"encoding/json"
	"io"
)

func jsonDecode(r io.Reader, v any) error {
	return json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(v)
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
