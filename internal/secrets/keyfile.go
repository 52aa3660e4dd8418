package secrets

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KeyFileBytes is the size of the keys read by LoadKeyFile: the local master key and the
// fingerprint HMAC key.
const KeyFileBytes = 32

// maxKeyFileSize bounds what LoadKeyFile reads; a key file is at most 64 hex characters plus
// a line ending, so anything much larger is not a key file.
const maxKeyFileSize = 1024

// LoadKeyFile reads a 32-byte key from path: 32 raw (binary) bytes, or 64 hex characters, or
// the standard/URL base64 (padded or not) of 32 bytes, with surrounding whitespace ignored. The
// file must be a regular file that neither group nor others can read or write (mode 0600 or
// stricter); otherwise it is refused and the error names the file. Errors never contain key
// material.
func LoadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %04o is accessible by group or others; chmod 600 it", path, perm)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	key, err := decodeKey(raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

func decodeKey(raw []byte) ([]byte, error) {
	if len(raw) > maxKeyFileSize {
		return nil, errors.New("too large for a key file")
	}
	// Random bytes are almost never all printable ASCII (about 1 in 10^14); a 32-character
	// text file is a short hex or base64 key or a passphrase, and must not be taken raw.
	if len(raw) == KeyFileBytes && !printableASCII(raw) {
		return bytes.Clone(raw), nil
	}
	text := bytes.TrimSpace(raw)
	if len(text) == 2*KeyFileBytes {
		key := make([]byte, KeyFileBytes)
		if _, err := hex.Decode(key, text); err == nil {
			return key, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		key := make([]byte, enc.DecodedLen(len(text)))
		n, err := enc.Strict().Decode(key, text)
		if err == nil && n == KeyFileBytes {
			return key[:n], nil
		}
	}
	// The decoder errors would quote the offending byte; say only what is expected.
	return nil, fmt.Errorf("must hold %d raw bytes, %d hex characters or base64 of %d bytes", KeyFileBytes, 2*KeyFileBytes, KeyFileBytes)
}

func printableASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// GenerateKeyFile creates path with a new random 32-byte key, hex encoded, mode 0600, and
// returns the key. It never overwrites: if path exists the error wraps fs.ErrExist. Missing
// parent directories are created with mode 0700.
func GenerateKeyFile(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	key := make([]byte, KeyFileBytes)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	text := make([]byte, 0, 2*KeyFileBytes+1)
	text = hex.AppendEncode(text, key)
	text = append(text, '\n')
	_, werr := f.Write(text)
	clear(text)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("key file %s: %w", path, werr)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return key, nil
}

// LoadOrGenerateKeyFile loads path, creating it first with GenerateKeyFile when it does not
// exist (the --dev path). created reports whether a new key was written.
func LoadOrGenerateKeyFile(path string) (key []byte, created bool, err error) {
	key, err = LoadKeyFile(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return key, false, err
	}
	key, err = GenerateKeyFile(path)
	if errors.Is(err, os.ErrExist) {
		// Another process created it between the two calls; use theirs.
		key, err = LoadKeyFile(path)
		return key, false, err
	}
	return key, err == nil, err
}
