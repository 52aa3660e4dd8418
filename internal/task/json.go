package task

import "encoding/json"

// jsonFrame encodes a gateway message. It cannot fail for the fixed message types.
func jsonFrame(v any) ([]byte, error) { return json.Marshal(v) }
