package executor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/flowgate/flowgate/internal/engine"
	"github.com/flowgate/flowgate/internal/executor/sandbox"
	"github.com/flowgate/flowgate/internal/listentest"
)

func needLandlock(t *testing.T) {
	t.Helper()
	if abi := sandbox.LandlockABI(); abi < 4 {
		t.Skipf("kernel Landlock ABI %d; these checks need 4 (filesystem and TCP)", abi)
	}
}

// checkLib is sourced by the probe scripts: check NAME CMD... prints NAME=ok or NAME=denied.
const checkLib = `check() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=ok"; else echo "$name=denied"; fi; }
`

// results parses the NAME=ok|denied lines of a probe script.
func results(lines []string) map[string]string {
	m := map[string]string{}
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, "="); ok && (v == "ok" || v == "denied") {
			m[k] = v
		}
	}
	return m
}

func expect(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%s, want %s", k, got[k], v)
		}
	}
}

// dataDir lays out a gateway's data_dir as production does: key files 0600 and the task root
// inside it.
func dataDir(t *testing.T, parent string) (data, key string) {
	t.Helper()
	data = filepath.Join(parent, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	key = filepath.Join(data, "signing.key")
	if err := os.WriteFile(key, []byte("-----BEGIN PRIVATE KEY-----"), 0o600); err != nil {
		t.Fatal(err)
	}
	return data, key
}

// An engine under the default policy, from the outside: what it can and cannot reach.
func TestEngineConfinement(t *testing.T) {
	needLandlock(t)
	data, key := dataDir(t, t.TempDir())
	postgres := listentest.Loopback(t, listentest.Drop) // like a local PostgreSQL
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			script := checkLib + fmt.Sprintf(`
if [ "$1" = other ]; then echo "tenant B notes" > "$HOME/notes"; echo ready; exec sleep 300; fi
check read-signing-key cat '%[1]s'
check list-data-dir ls '%[2]s'
check read-other-task cat "$HOME/../other/notes"
check list-task-root ls "$HOME/.."
check read-root ls /root
check connect-postgres '%[3]s' helper-connect '%[4]s'
check write-home sh -c 'echo x > "$HOME/f" && mkdir "$HOME/d" && mv "$HOME/f" "$HOME/d/f"'
check write-tmpdir sh -c 'echo x > "$TMPDIR/f" && [ "$TMPDIR" = "$HOME/tmp" ]'
check write-tmp sh -c 'echo x > /tmp/flowgate-confine-$$'
check read-hostname cat /etc/hostname
check exec-sh /bin/sh -c true
check read-proc cat /proc/1/cmdline
`, key, data, self(t), postgres)
			ex := newExecutor(t, mode, shProfile(t, script), func(o *Options) {
				o.WorkdirRoot = filepath.Join(data, "tasks")
				o.Protect = []string{data}
			})
			// Another tenant's task, running.
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			ready := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				_, err := ex.Run(ctx, spec("other", "other"), &collector{onLine: func(_, l string) {
					if l == "ready" {
						close(ready)
					}
				}})
				done <- err
			}()
			select {
			case <-ready:
			case err := <-done:
				t.Fatalf("other task: %v", err)
			}
			if b, err := os.ReadFile(filepath.Join(data, "tasks", "other", "notes")); err != nil || len(b) == 0 {
				t.Fatalf("the other task's file is not there: %v", err)
			}

			c := &collector{}
			res, err := ex.Run(t.Context(), spec("probe", "probe"), c)
			cancel()
			if err != nil || res.ExitCode != 0 {
				t.Fatalf("run: %v %+v %q", err, res, c.stderr())
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			t.Logf("landlock ABI %d:\n%s", ex.LandlockABI(), strings.Join(c.stdout(), "\n"))
			want := map[string]string{
				"read-signing-key": "denied", "list-data-dir": "denied", "read-other-task": "denied",
				"list-task-root": "denied", "read-root": "denied", "connect-postgres": "denied",
				"write-home": "ok", "write-tmpdir": "ok", "write-tmp": "denied",
				"read-hostname": "ok", "exec-sh": "ok",
				// Only a private /proc is granted; the pgroup engine would see the host's.
				"read-proc": map[sandbox.Mode]string{sandbox.PIDNS: "ok", sandbox.PGroup: "denied"}[mode],
			}
			expect(t, results(c.stdout()), want)
		})
	}
}

// The dev layout: the sim engine is the flowgate binary, built in the directory that also
// holds ./data. The engine's directory is granted without the data directory inside it.
func TestEngineDirectoryHoldingTheDataDir(t *testing.T) {
	needLandlock(t)
	repo := t.TempDir()
	data, key := dataDir(t, repo)
	readme := filepath.Join(repo, "README.md")
	if err := os.WriteFile(readme, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(repo, "engine.sh")
	script := "#!/bin/sh\n" + checkLib + fmt.Sprintf("check read-readme cat '%s'\ncheck read-signing-key cat '%s'\ncheck list-repo ls '%s'\n", readme, key, repo)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := engine.New(engine.Config{Profile: engine.ProfileCustom, Command: bin, Args: []string{"{objective}"}}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range modes {
		ex := newExecutor(t, mode, p, func(o *Options) {
			o.WorkdirRoot = filepath.Join(data, "tasks")
			o.Protect = []string{data}
		})
		c := &collector{}
		if _, err := ex.Run(t.Context(), spec("t1", "x"), c); err != nil {
			t.Fatal(err)
		}
		// Listing the directory needs the directory itself, which is split into its entries.
		expect(t, results(c.stdout()), map[string]string{"read-readme": "ok", "read-signing-key": "denied", "list-repo": "denied"})
	}
}

func TestPolicyOptionsErrors(t *testing.T) {
	p := shProfile(t, "true")
	base := t.TempDir()
	data, key := dataDir(t, base)
	for _, tt := range []struct {
		name string
		mod  func(*Options)
		key  string
	}{
		{"bad mode", func(o *Options) { o.Landlock = "sometimes" }, "engine.landlock"},
		{"read path in data_dir", func(o *Options) { o.ReadPaths = []string{key} }, "engine.read_paths[0]"},
		{"write path is data_dir", func(o *Options) { o.WritePaths = []string{data} }, "engine.write_paths[0]"},
		{"read path in the task root", func(o *Options) { o.ReadPaths = []string{"/", o.WorkdirRoot} }, "engine.read_paths[1]"},
		{"missing read path", func(o *Options) { o.ReadPaths = []string{filepath.Join(base, "nope")} }, "engine.read_paths[0]"},
		{"relative write path", func(o *Options) { o.WritePaths = []string{"tmp"} }, "engine.write_paths[0]"},
		{"port 0", func(o *Options) { o.ConnectPorts = []int{443, 0} }, "engine.connect_ports[1]"},
		{"port too big", func(o *Options) { o.ConnectPorts = []int{65536} }, "engine.connect_ports[0]"},
		{"run as root", func(o *Options) { o.RunAs = "0:0" }, "engine.run_as"},
		{"run as root group", func(o *Options) { o.RunAs = "65534:0" }, "engine.run_as"},
		{"run as a name", func(o *Options) { o.RunAs = "nobody" }, "engine.run_as"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{Profile: p, WorkdirRoot: filepath.Join(base, "tasks"), InitPath: self(t), Protect: []string{data}}
			tt.mod(&opts)
			if _, err := New(opts); err == nil || !strings.HasPrefix(err.Error(), tt.key) {
				t.Errorf("err %v, want %s", err, tt.key)
			}
		})
	}
	if os.Getuid() == 0 {
		// The task root inside a data_dir only root may enter.
		_, err := New(Options{Profile: p, WorkdirRoot: filepath.Join(data, "tasks"), InitPath: self(t), RunAs: "65534:65534"})
		if err == nil || !strings.HasPrefix(err.Error(), "engine.workdir_root") {
			t.Errorf("unreachable task root: %v", err)
		}
	}
}

// openToAll makes dir and its ancestors up to the temporary directory searchable by everyone,
// as installed directories are.
func openToAll(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// publicBinary copies the test binary where another user can execute it.
func publicBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	openToAll(t, dir)
	bin := filepath.Join(dir, "executor.test")
	b, err := os.ReadFile(self(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// engine.run_as: the engine runs as that user, owns what it creates in HOME and TMPDIR, and the
// gateway's 0600 files are closed to it by file permissions alone, Landlock or not.
func TestRunAs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("engine.run_as needs a root gateway")
	}
	const uid, gid = 65534, 65533
	bin := publicBinary(t)
	base := t.TempDir()
	openToAll(t, base)
	data, key := dataDir(t, base)
	root := filepath.Join(base, "tasks")
	script := checkLib + fmt.Sprintf(`echo "id=$(id -u):$(id -g):$(id -G)"
check read-signing-key cat '%[1]s'
check chmod-signing-key chmod 0644 '%[1]s'
check write-home sh -c 'echo x > "$HOME/made" && mkdir "$TMPDIR/d"'
echo ready; exec sleep 300
`, key)
	for _, ll := range []sandbox.LandlockMode{sandbox.LandlockOff, sandbox.LandlockAuto} {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("landlock=%s/%s", ll, mode), func(t *testing.T) {
				ex := newExecutor(t, mode, shProfile(t, script), func(o *Options) {
					o.InitPath, o.ReadPaths = bin, nil
					o.WorkdirRoot, o.Protect = root, []string{data}
					o.RunAs, o.Landlock = fmt.Sprintf("%d:%d", uid, gid), ll
				})
				home := filepath.Join(root, "t1")
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				owners := map[string]string{}
				c := &collector{onLine: func(_, l string) {
					if l != "ready" {
						return
					}
					for _, p := range []string{home, filepath.Join(home, "made"), filepath.Join(home, "tmp"), filepath.Join(home, "tmp", "d")} {
						if fi, err := os.Stat(p); err == nil {
							st := fi.Sys().(*syscall.Stat_t)
							owners[strings.TrimPrefix(p, home)] = fmt.Sprintf("%d:%d %#o", st.Uid, st.Gid, fi.Mode().Perm())
						}
					}
					cancel()
				}}
				if _, err := ex.Run(ctx, spec("t1", "x"), c); err != nil {
					t.Fatal(err)
				}
				out := c.stdout()
				t.Logf("%q owners %v", out, owners)
				if len(out) == 0 || out[0] != fmt.Sprintf("id=%d:%d:%d", uid, gid, gid) {
					t.Errorf("engine identity %q", out)
				}
				// chmod: Landlock does not restrict it; only not owning the file does.
				expect(t, results(out), map[string]string{"read-signing-key": "denied", "chmod-signing-key": "denied", "write-home": "ok"})
				own := fmt.Sprintf("%d:%d", uid, gid)
				for _, p := range []string{"", "/tmp"} {
					if owners[p] != own+" 0700" {
						t.Errorf("%q: %q, want %s 0700", p, owners[p], own)
					}
				}
				for _, p := range []string{"/made", "/tmp/d"} {
					if !strings.HasPrefix(owners[p], own+" ") {
						t.Errorf("%q: %q, want owned by %s", p, owners[p], own)
					}
				}
				if fi, err := os.Stat(root); err != nil || fi.Mode().Perm() != 0o711 {
					t.Errorf("task root: %v %v, want 0711", fi.Mode(), err)
				}
				if _, err := os.Lstat(home); !os.IsNotExist(err) {
					t.Errorf("task directory left behind: %v", err)
				}
			})
		}
	}
}
