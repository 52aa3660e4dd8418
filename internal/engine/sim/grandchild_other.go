//go:build !unix

package sim

import "errors"

func startGrandchild(string, bool, <-chan struct{}) (int, error) {
	return 0, errors.New("a setsid grandchild needs a unix system")
}
