package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every environment override.
const EnvPrefix = "FLOWGATE_"

// maxFileBytes bounds a config file; a real one is a few KiB.
const maxFileBytes = 1 << 20

// Load builds the effective configuration: defaults, then the YAML document (unknown keys
// are an error), then FLOWGATE_* environment overrides, then checks. dev marks --dev.
func Load(yamlDoc []byte, getenv func(string) string, dev bool) (Config, error) {
	cfg := Default()
	cfg.Dev = dev
	if len(bytes.TrimSpace(yamlDoc)) > 0 {
		dec := yaml.NewDecoder(bytes.NewReader(yamlDoc))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("config: %s", yamlError(err))
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// ReadFile reads a config file with a size bound.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("config: %s is larger than %d bytes", path, maxFileBytes)
	}
	return data, nil
}

// yamlError rewrites yaml.v3's messages so they name the key the way the docs do.
func yamlError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n  ")
	msg = strings.ReplaceAll(msg, "\n  ", "; ")
	return strings.ReplaceAll(msg, " in type config.", " in section ")
}

// Path resolves p against DataDir unless it is absolute or empty.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.DataDir, p)
}

// ProtectedPaths lists the gateway's own state and credentials, which no engine may reach:
// data_dir, the database file, every key file, and the files named by the credential variables
// of the libraries the gateway uses (an EKS web-identity token, a PostgreSQL password file).
// Paths are resolved against data_dir; the list may name files that do not exist.
func (c *Config) ProtectedPaths(getenv func(string) string) []string {
	paths := []string{c.DataDir}
	add := func(p string) {
		if p != "" {
			paths = append(paths, c.Path(p))
		}
	}
	if c.Store.Driver == "sqlite" {
		add(c.Store.Path)
	}
	add(c.Auth.Signing.KeyFile)
	for _, f := range c.Auth.Signing.PreviousKeyFiles {
		add(f)
	}
	for _, is := range c.Auth.Issuers {
		for _, k := range is.Keys {
			add(k.File)
		}
	}
	add(c.Secrets.FingerprintKeyFile)
	add(c.Secrets.Local.MasterKeyFile)
	add(c.Audit.CheckpointKeyFile)
	for _, name := range []string{"AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "PGPASSFILE", "PGSSLKEY"} {
		if v := getenv(name); filepath.IsAbs(v) {
			paths = append(paths, v)
		}
	}
	return paths
}

// EnvName is the environment variable that overrides the key at path ("server.addr").
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

var durationType = reflect.TypeOf(time.Duration(0))

// applyEnv walks every leaf key and applies FLOWGATE_<PATH> when set.
func applyEnv(cfg *Config, getenv func(string) string) error {
	var errs []error
	walk(reflect.ValueOf(cfg).Elem(), "", func(path string, v reflect.Value) {
		raw := getenv(EnvName(path))
		if raw == "" {
			return
		}
		if err := setFromString(v, raw); err != nil {
			errs = append(errs, fmt.Errorf("config: %s (from %s): %w", path, EnvName(path), err))
		}
	})
	return errors.Join(errs...)
}

// Keys lists every leaf key path, for documentation checks and tests.
func Keys() []string {
	var keys []string
	cfg := Default()
	walk(reflect.ValueOf(&cfg).Elem(), "", func(path string, _ reflect.Value) {
		keys = append(keys, path)
	})
	return keys
}

func walk(v reflect.Value, prefix string, leaf func(path string, v reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			walk(fv, path, leaf)
			continue
		}
		if f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct {
			continue // lists of objects (auth.issuers) only come from the file
		}
		leaf(path, fv)
	}
}

func setFromString(v reflect.Value, raw string) error {
	if v.Type() == reflect.TypeFor[ByteSize]() {
		n, err := ParseByteSize(raw)
		if err != nil {
			return err
		}
		v.SetInt(n)
		return nil
	}
	if v.Type() == durationType {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return fmt.Errorf("not a duration like 30s or 5m")
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("not a boolean")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer")
		}
		v.SetInt(n)
	case reflect.Pointer:
		if v.Type().Elem().Kind() != reflect.Bool {
			return fmt.Errorf("unsupported type")
		}
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("not a boolean")
		}
		v.Set(reflect.ValueOf(&b))
	case reflect.Slice:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		switch v.Type().Elem().Kind() {
		case reflect.String:
			v.Set(reflect.ValueOf(items))
		case reflect.Int:
			ints := make([]int, 0, len(items))
			for _, s := range items {
				n, err := strconv.Atoi(s)
				if err != nil {
					return fmt.Errorf("not a comma-separated list of integers")
				}
				ints = append(ints, n)
			}
			v.Set(reflect.ValueOf(ints))
		default:
			return fmt.Errorf("unsupported type")
		}
	default:
		return fmt.Errorf("unsupported type")
	}
	return nil
}

// QueryTokensAllowed is the effective auth.allow_query_token: the explicit value when set,
// otherwise on for --dev (seed clients put the token in the URL) and off everywhere else.
func (c *Config) QueryTokensAllowed() bool {
	if c.Auth.AllowQueryToken != nil {
		return *c.Auth.AllowQueryToken
	}
	return c.Dev
}

// Warnings lists settings that are allowed but deserve a line in the log at start.
func (c *Config) Warnings() []string {
	var w []string
	if c.Dev && !IsLoopback(c.Server.Addr) {
		w = append(w, "--dev on a non-loopback listener ("+c.Server.Addr+"): demo tokens and query-string tokens are reachable from the network")
	}
	if !c.Dev && c.QueryTokensAllowed() && !IsLoopback(c.Server.Addr) {
		w = append(w, "auth.allow_query_token is on for a non-loopback listener: tokens in URLs end up in proxy logs and browser history")
	}
	if !c.Audit.FailClosed {
		w = append(w, "audit.fail_closed is false: actions proceed when their audit record cannot be written")
	}
	return w
}

// IsLoopback reports whether a listen address binds only loopback interfaces.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Redacted returns a copy safe to log: credentials inside URLs are masked. Secret values
// never live in the config itself, only the names of files holding them.
func (c Config) Redacted() Config {
	c.Store.DSN = maskURL(c.Store.DSN)
	c.Cluster.RedisURL = maskURL(c.Cluster.RedisURL)
	return c
}

func maskURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "[unparseable, masked]"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	q := u.Query()
	for _, k := range []string{"password", "pass", "secret"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}
