// Package jsonscan skips and encodes JSON at the byte level for the hot paths — engine lines
// turned into frames, the sim's output, the load client's frame scanner — where encoding/json
// would cost an allocation or a reflection walk per event.
package jsonscan
