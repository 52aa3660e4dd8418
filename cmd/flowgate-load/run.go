package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// usageError is a bad command line (exit status 2).
type usageError string

func (e usageError) Error() string { return string(e) }

// errNotOK: the run finished and its JSON was printed, but it did not do what was asked
// (missed connections, failed swarms, missing events, errors). Exit status 3.
var errNotOK = errors.New("run finished with errors (see the JSON)")

// Bounds on every size the command line can ask for.
const (
	maxConns    = 100_000
	maxClients  = 10_000
	maxSwarms   = 1_000_000
	maxEvents   = 10_000_000
	maxRate     = 100_000
	maxAgents   = 20
	maxInflight = 1000
	maxDuration = time.Hour
	maxDialers  = 4096
	maxUsers    = 1_000_000
)

const usageText = `usage: flowgate-load MODE [flags]
       flowgate-load table FILE...      (compare results: first label vs the second)

Modes (each prints one JSON object on stdout; exit 0 ok, 3 finished with errors, 2 usage):
  idle    hold --conns authenticated connections; connect rate, connect p50/p99,
          server RSS per connection with --server-pid; --probe starts one swarm on one
          more connection during the hold: swarm→task_created and →first event
  handshake  idle for throughput: --dial-concurrency 256 and --settle 0 unless given;
          handshakes/s and connect p50/p99 (its RSS figures include handshake garbage)
  stream  --clients connections, one unpaced swarm each (sim:pace=0 sim:events=E);
          total events/s from the first event to the last task_complete
  paced   --clients swarms each at --rate events/s for --duration (sim:rate=R);
          engine→client latency from each event's emittedAtNs
  burst   paced with every swarm started at the same moment and no warm-up excluded
          (defaults: 200 clients, 50 events/s for 5 s: 250 lines 20 ms apart): the
          latency of a start burst, engine and sandbox start-ups included
  spawn   --swarms short swarms over --clients connections (--inflight each);
          swarms/s, swarm→task_created and swarm→task_complete p50/p99

--source-net 127.0.0.0/8 (any mode) dials each connection from its own loopback address, so
neither one address's ephemeral ports nor the gateway's per-IP caps bound the run; the soft
fd limit is raised to the hard one, and a run needing more descriptors is refused up front.

Authentication: --signing-key D/signing.key mints one Ed25519 token per user (--users,
default one per connection) so per-user limits do not dominate; or one shared token from
--token-file / $FLOWGATE_LOAD_TOKEN; or --no-auth (the seed server).
`

// config is the command line, echoed in the JSON output. Sizes a mode does not use are 0
// and omitted.
type config struct {
	Mode        string `json:"mode"`
	Label       string `json:"label,omitempty"`
	URL         string `json:"url"`
	Auth        string `json:"auth"` // minted | token | none
	TokenSource string `json:"tokenSource,omitempty"`
	Tenant      string `json:"tenant,omitempty"`
	Users       int    `json:"users,omitempty"`

	Conns    int `json:"conns,omitempty"`
	Clients  int `json:"clients,omitempty"`
	Swarms   int `json:"swarms,omitempty"`
	Events   int `json:"events,omitempty"`
	Agents   int `json:"agents,omitempty"`
	Rate     int `json:"rate,omitempty"`
	Inflight int `json:"inflight,omitempty"`

	DurationMs int64  `json:"durationMs,omitempty"`
	WarmupMs   int64  `json:"warmupMs,omitempty"`
	HoldMs     int64  `json:"holdMs,omitempty"`
	SettleMs   int64  `json:"settleMs,omitempty"`
	TimeoutMs  int64  `json:"timeoutMs"`
	Dialers    int    `json:"dialConcurrency"`
	ServerPID  int    `json:"serverPid,omitempty"`
	Directives string `json:"directives,omitempty"`
	SourceNet  string `json:"sourceNet,omitempty"`
	Probe      bool   `json:"probe,omitempty"`
	// RLIMIT_NOFILE (soft, after raising it to the hard limit) the run had: the ceiling on
	// connections one process can hold, so a reader can tell a small run from a capped one.
	FDLimit uint64 `json:"fdLimit,omitempty"`

	// Not in the output.
	duration, warmup, hold, settle, timeout time.Duration
	signingKey, tokenFile, issuer, audience string
	hs256Secret, kid                        string
	subPrefix                               string
	tokenTTL                                time.Duration
	pretty                                  bool
	src                                     *sourceNet
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usageText)
		if len(args) == 0 {
			return usageError("a mode is required")
		}
		return nil
	}
	mode := args[0]
	if mode == "table" {
		return runTable(args[1:], stdout)
	}
	switch mode {
	case "idle", "handshake", "stream", "paced", "burst", "spawn":
	default:
		return usageError(fmt.Sprintf("unknown mode %q (idle, handshake, stream, paced, burst, spawn, table)", mode))
	}
	cfg, err := parseFlags(mode, args[1:], getenv, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	// Before minting: 100,000 tokens take a while, and a run that cannot hold its
	// connections should say so at once, not fail with EMFILE halfway through the dials.
	soft, hard, err := raiseFDLimit()
	if err != nil {
		fmt.Fprintln(stderr, "flowgate-load: warning: RLIMIT_NOFILE:", err)
	}
	cfg.FDLimit = soft
	if err := checkFDs(cfg, soft, hard); err != nil {
		return err
	}

	tokens, err := newTokens(cfg, getenv)
	if err != nil {
		return err
	}
	rep := &report{Tool: "flowgate-load", Schema: 1, Mode: mode, Label: cfg.Label, Config: cfg, errs: newErrorLog()}
	start := time.Now()
	rep.StartedAt = start.UTC().Format(time.RFC3339Nano)
	switch mode {
	case "idle", "handshake":
		rep.Result, rep.OK = runIdle(ctx, cfg, tokens, rep.errs)
	case "stream":
		rep.Result, rep.OK = runStream(ctx, cfg, tokens, rep.errs)
	case "paced", "burst":
		rep.Result, rep.OK = runPaced(ctx, cfg, tokens, rep.errs)
	case "spawn":
		rep.Result, rep.OK = runSpawn(ctx, cfg, tokens, rep.errs)
	}
	rep.ElapsedMs = ms(int64(time.Since(start)))
	rep.Errors = rep.errs.snapshot()
	if rep.Errors.Total > 0 {
		rep.OK = false
	}
	var out []byte
	if cfg.pretty {
		out, err = json.MarshalIndent(rep, "", "  ")
	} else {
		out, err = json.Marshal(rep)
	}
	if err != nil {
		return err
	}
	if _, err := stdout.Write(append(out, '\n')); err != nil {
		return err
	}
	if !rep.OK {
		return errNotOK
	}
	return nil
}

// report is the one JSON object a run prints.
type report struct {
	Tool      string       `json:"tool"`
	Schema    int          `json:"schema"`
	Mode      string       `json:"mode"`
	Label     string       `json:"label,omitempty"`
	StartedAt string       `json:"startedAt"`
	ElapsedMs float64      `json:"elapsedMs"`
	Config    *config      `json:"config"`
	Result    any          `json:"result"`
	Errors    errorSummary `json:"errors"`
	OK        bool         `json:"ok"`

	errs *errorLog
}

func parseFlags(mode string, args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	cfg := &config{Mode: mode}
	fs := flag.NewFlagSet("flowgate-load "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText+"\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.URL, "url", getenv("FLOWGATE_LOAD_URL"), "WebSocket URL: ws://HOST:PORT/ws (flowgate) or ws://HOST:PORT/ (seed) [$FLOWGATE_LOAD_URL]")
	fs.StringVar(&cfg.Label, "label", "", "name of the server under test, echoed in the output (table pairs runs by it)")
	noAuth := fs.Bool("no-auth", false, "send no token (the seed server has no authentication)")
	fs.StringVar(&cfg.signingKey, "signing-key", "", "Ed25519 PKCS#8 PEM key (flowgate --dev: DATA_DIR/signing.key) to mint per-user tokens")
	fs.StringVar(&cfg.tokenFile, "token-file", "", "file holding one token shared by every connection (else $FLOWGATE_LOAD_TOKEN)")
	fs.StringVar(&cfg.Tenant, "tenant", "demo", "tenant of minted tokens")
	fs.StringVar(&cfg.subPrefix, "sub-prefix", "load-", "subject prefix of minted tokens (users are PREFIX0, PREFIX1, ...)")
	fs.IntVar(&cfg.Users, "users", 0, "distinct users to mint tokens for, round-robin over connections (0: one per connection)")
	fs.StringVar(&cfg.hs256Secret, "hs256-secret", "", "file with an HS256 secret (>= 32 bytes) to mint per-user tokens instead of --signing-key; the gateway must trust it as an issuer (--issuer, --kid)")
	fs.StringVar(&cfg.kid, "kid", "", "kid header of HS256-minted tokens")
	fs.StringVar(&cfg.issuer, "issuer", "flowgate", "iss of minted tokens")
	fs.StringVar(&cfg.audience, "audience", "flowgate", "aud of minted tokens")
	fs.DurationVar(&cfg.tokenTTL, "token-ttl", time.Hour, "lifetime of minted tokens")
	fs.StringVar(&cfg.TokenSource, "token-source", "header", "how the token travels: header, subprotocol or query")
	fs.IntVar(&cfg.Dialers, "dial-concurrency", 64, "handshakes in flight at once")
	fs.DurationVar(&cfg.timeout, "timeout", 10*time.Minute, "bound on the whole run; what is unfinished then counts as an error")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "server process to sample VmRSS of (/proc/PID/status)")
	fs.BoolVar(&cfg.pretty, "pretty", false, "indent the JSON output")

	fs.IntVar(&cfg.Conns, "conns", 0, "idle: connections to hold (default 100)")
	fs.DurationVar(&cfg.hold, "hold", 0, "idle: keep the connections open this long after the settle sample")
	fs.DurationVar(&cfg.settle, "settle", 2*time.Second, "idle: wait this long after the last handshake before sampling RSS")
	fs.BoolVar(&cfg.Probe, "probe", false, "idle: after the settle sample, open one more connection (a user of its own) and time one swarm on it")
	fs.StringVar(&cfg.SourceNet, "source-net", "", "dial connection i from address i of this CIDR (inside 127.0.0.0/8; network and broadcast skipped); needs a loopback --url")
	fs.IntVar(&cfg.Clients, "clients", 0, "stream, paced, spawn: connections (default 4 stream, 10 paced, 4 spawn)")
	fs.IntVar(&cfg.Events, "events", 0, "stream, spawn: body events per swarm, sim:events (default 2000 stream, 200 spawn)")
	fs.IntVar(&cfg.Agents, "agents", 3, "options.agents of every swarm (the sim emits one agent_spawn per agent)")
	fs.IntVar(&cfg.Rate, "rate", 0, "paced: events per second per swarm, sim:rate (default 50)")
	fs.DurationVar(&cfg.duration, "duration", 0, "paced: how long each swarm emits (default 5s)")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "paced: latency of events in each swarm's first D is reported apart")
	fs.IntVar(&cfg.Swarms, "swarms", 0, "spawn: swarms in all (default 40)")
	fs.IntVar(&cfg.Inflight, "inflight", 1, "spawn: swarms in flight per connection")
	fs.StringVar(&cfg.Directives, "directives", "", "extra words appended to every objective (e.g. sim:stderr)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, usageError("help requested")
		}
		return nil, usageError(err.Error())
	}
	if fs.NArg() > 0 {
		return nil, usageError(fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if mode == "burst" && !flagSet(fs, "warmup") {
		cfg.warmup = 0 // every event counts: the start-up is what a burst measures
	}
	if mode == "handshake" {
		// Throughput, not memory: enough handshakes in flight to keep both cores busy, and
		// no settle wait.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["dial-concurrency"] {
			cfg.Dialers = 256
		}
		if !set["settle"] {
			cfg.settle = 0
		}
	}
	if err := cfg.check(*noAuth, getenv); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (cfg *config) check(noAuth bool, getenv func(string) string) error {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return usageError("--url must be a ws:// or wss:// URL")
	}
	if u.RawQuery != "" || u.User != nil {
		return usageError("--url must not carry a query or user info (tokens go in --token-file or --signing-key)")
	}
	cfg.URL = u.String()
	if cfg.SourceNet != "" {
		src, err := parseSourceNet(cfg.SourceNet)
		if err != nil {
			return err
		}
		if !loopbackURL(u) {
			return usageError("--source-net needs a loopback --url (127.x.x.x or localhost)")
		}
		cfg.src, cfg.SourceNet = src, src.prefix.String()
	}
	if cfg.Probe && cfg.Mode != "idle" {
		return usageError("--probe is for idle only")
	}

	explicit := 0
	for _, set := range []bool{noAuth, cfg.signingKey != "" || cfg.hs256Secret != "", cfg.tokenFile != ""} {
		if set {
			explicit++
		}
	}
	if explicit > 1 {
		return usageError("--no-auth, --signing-key (or --hs256-secret) and --token-file exclude each other")
	}
	if explicit == 0 && getenv("FLOWGATE_LOAD_TOKEN") == "" {
		return usageError("give --signing-key, --token-file (or $FLOWGATE_LOAD_TOKEN), or --no-auth")
	}
	switch {
	case noAuth:
		cfg.Auth, cfg.TokenSource, cfg.Tenant, cfg.Users = "none", "", "", 0
	case cfg.signingKey != "" && cfg.hs256Secret != "":
		return usageError("--signing-key and --hs256-secret exclude each other")
	case cfg.signingKey != "" || cfg.hs256Secret != "":
		cfg.Auth = "minted"
	default:
		cfg.Auth, cfg.Tenant, cfg.Users = "token", "", 0
	}
	switch cfg.TokenSource {
	case "", "header", "subprotocol", "query":
	default:
		return usageError("--token-source must be header, subprotocol or query")
	}

	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	inRange := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return usageError(fmt.Sprintf("--%s must be between %d and %d", name, lo, hi))
		}
		return nil
	}
	durRange := func(name string, d, lo time.Duration) error {
		if d < lo || d > maxDuration {
			return usageError(fmt.Sprintf("--%s must be between %s and %s", name, lo, maxDuration))
		}
		return nil
	}
	var errs []error
	keep := map[string]bool{}
	switch cfg.Mode {
	case "idle", "handshake":
		def(&cfg.Conns, 100)
		errs = append(errs, inRange("conns", cfg.Conns, 1, maxConns), durRange("hold", cfg.hold, 0), durRange("settle", cfg.settle, 0))
		keep["conns"] = true
	case "stream":
		def(&cfg.Clients, 4)
		def(&cfg.Events, 2000)
		keep["clients"], keep["events"], keep["agents"] = true, true, true
	case "paced", "burst":
		if cfg.Mode == "burst" {
			def(&cfg.Clients, 200)
		}
		def(&cfg.Clients, 10)
		def(&cfg.Rate, 50)
		if cfg.duration == 0 {
			cfg.duration = 5 * time.Second
		}
		errs = append(errs, inRange("rate", cfg.Rate, 1, maxRate), durRange("duration", cfg.duration, time.Second),
			durRange("warmup", cfg.warmup, 0))
		if cfg.warmup >= cfg.duration {
			errs = append(errs, usageError("--warmup must be shorter than --duration"))
		}
		cfg.Events = int(int64(cfg.Rate) * int64(cfg.duration) / int64(time.Second))
		keep["clients"], keep["events"], keep["agents"], keep["rate"] = true, true, true, true
	case "spawn":
		def(&cfg.Clients, 4)
		def(&cfg.Events, 200)
		def(&cfg.Swarms, 40)
		errs = append(errs, inRange("swarms", cfg.Swarms, 1, maxSwarms), inRange("inflight", cfg.Inflight, 1, maxInflight))
		if cfg.Swarms < cfg.Clients {
			errs = append(errs, usageError("--swarms must be at least --clients"))
		}
		keep["clients"], keep["events"], keep["agents"], keep["swarms"], keep["inflight"] = true, true, true, true, true
	}
	if keep["clients"] {
		errs = append(errs, inRange("clients", cfg.Clients, 1, maxClients), inRange("events", cfg.Events, 0, maxEvents),
			inRange("agents", cfg.Agents, 1, maxAgents))
	}
	errs = append(errs, inRange("dial-concurrency", cfg.Dialers, 1, maxDialers), inRange("users", cfg.Users, 0, maxUsers),
		durRange("timeout", cfg.timeout, time.Second), durRange("token-ttl", cfg.tokenTTL, time.Second))
	if cfg.ServerPID < 0 {
		errs = append(errs, usageError("--server-pid must be a process id"))
	}
	if len(cfg.Directives) > 500 || strings.ContainsAny(cfg.Directives, "\x00\n\r") {
		errs = append(errs, usageError("--directives must be one line of at most 500 bytes"))
	}
	if err := errors.Join(errs...); err != nil {
		return usageError(err.Error())
	}
	// Echo only what the mode uses.
	if !keep["clients"] {
		cfg.Clients, cfg.Agents = 0, 0
	}
	if !keep["events"] {
		cfg.Events = 0
	}
	if !keep["rate"] {
		cfg.Rate, cfg.duration, cfg.warmup = 0, 0, 0
	}
	if !keep["swarms"] {
		cfg.Swarms, cfg.Inflight = 0, 0
	}
	if cfg.Mode != "idle" {
		cfg.hold, cfg.settle = 0, 0
	}
	cfg.DurationMs, cfg.WarmupMs = cfg.duration.Milliseconds(), cfg.warmup.Milliseconds()
	cfg.HoldMs, cfg.SettleMs, cfg.TimeoutMs = cfg.hold.Milliseconds(), cfg.settle.Milliseconds(), cfg.timeout.Milliseconds()
	return nil
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// fdReserve is descriptors the process needs besides its connections: stdio, the poller,
// key and token files, /proc reads.
const fdReserve = 64

// checkFDs refuses a run whose connections cannot all be open at once under the soft fd
// limit (0: unknown, not checked).
func checkFDs(cfg *config, soft, hard uint64) error {
	conns := max(cfg.Conns, cfg.Clients)
	if cfg.Probe {
		conns++
	}
	need := uint64(conns) + fdReserve
	if soft == 0 || need <= soft {
		return nil
	}
	flag := "--conns"
	if cfg.Conns == 0 {
		flag = "--clients"
	}
	most := int64(soft) - fdReserve
	if cfg.Probe {
		most--
	}
	return usageError(fmt.Sprintf("%s %d needs %d file descriptors, but RLIMIT_NOFILE allows %d (hard limit %d; "+
		"raising the hard limit takes root or CAP_SYS_RESOURCE): use %s %d or fewer, or raise the limit",
		flag, max(cfg.Conns, cfg.Clients), need, soft, hard, flag, max(most, 0)))
}
