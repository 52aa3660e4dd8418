package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/flowgate/flowgate/configs"
	"github.com/flowgate/flowgate/internal/config"
)

// configFlags are the flags every command that needs the configuration takes.
type configFlags struct {
	path    string
	dev     bool
	dataDir string
}

func (c *configFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.path, "config", "", "configuration file (YAML); one of --config and --dev is required")
	fs.BoolVar(&c.dev, "dev", false, "zero-setup development mode: SQLite, simulated engine, generated keys, demo tenant")
	fs.StringVar(&c.dataDir, "data-dir", "", "directory for all state (overrides data_dir)")
}

// load builds the effective configuration: the file (or the embedded dev file), then
// FLOWGATE_* overrides, then --data-dir.
func (c *configFlags) load(getenv func(string) string) (config.Config, error) {
	if c.path == "" && !c.dev {
		// Built-in defaults alone describe no deployment (no keys, no AWS region): starting
		// from them only leads to an error about some setting deep inside, or to a stray
		// ./data directory.
		return config.Config{}, usageError("no configuration: add --dev for a zero-setup development gateway " +
			"(SQLite, simulated engine, demo tenant), or --config FILE for a deployment's " +
			"(e.g. --config /etc/flowgate/flowgate.yaml, with the service's environment: see docs/operations.md)")
	}
	var doc []byte
	switch {
	case c.path != "":
		data, err := config.ReadFile(c.path)
		if err != nil {
			return config.Config{}, err
		}
		doc = data
	case c.dev:
		doc = configs.Dev
	}
	cfg, err := config.Load(doc, getenv, c.dev)
	if err != nil {
		return config.Config{}, err
	}
	if c.dataDir != "" {
		cfg.DataDir = c.dataDir
	}
	// Paths resolve against data_dir; an absolute data_dir keeps them meaning the same
	// thing to the sandbox (which needs absolute paths) and to every child process.
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return config.Config{}, fmt.Errorf("config: data_dir: %w", err)
	}
	cfg.DataDir = abs
	return cfg, nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("flowgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args; -h prints usage and returns errHelp so the caller exits 0.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return &exitError{code: 2}
	}
	return nil
}

var errHelp = &exitError{code: 0}

func newLogger(cfg config.Config, stderr io.Writer) *slog.Logger {
	level := slog.LevelInfo
	switch cfg.Log.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(stderr, opts))
}
