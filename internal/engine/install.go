package engine

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// Install describes where an engine binary lives, for the sandbox to grant: the binary as
// configured, the file it resolves to, the installation root that file belongs to, and the
// interpreter a script names in its #! line.
type Install struct {
	Binary      string // as configured (may be a symlink, e.g. npm's bin/claude)
	Resolved    string // symlinks resolved
	Root        string // npm package root holding Resolved, else Resolved's directory
	Interpreter string // resolved interpreter of a #! script ("" for native binaries)
}

// maxShebang bounds how much of a binary is read to find a #! line.
const maxShebang = 256

// Inspect resolves bin. path is the engine's PATH, used to find "#!/usr/bin/env node" the way
// the engine will. Unresolvable parts are left empty: the sandbox then grants less and the
// engine fails visibly, which `flowgate doctor` explains.
func Inspect(bin, path string) Install {
	in := Install{Binary: bin, Resolved: bin, Root: filepath.Dir(bin)}
	if r, err := filepath.EvalSymlinks(bin); err == nil {
		in.Resolved = r
		in.Root = PackageRoot(r)
	}
	if interp := shebang(in.Resolved); interp != "" {
		if r, err := filepath.EvalSymlinks(searchPath(interp, path)); err == nil {
			in.Interpreter = r
		}
	}
	return in
}

// PackageRoot returns the npm package directory that holds file: the nearest ancestor with a
// package.json whose parent is node_modules (or node_modules/@scope). Node packages read
// their own package.json and modules at start, so granting only bin/ breaks them. A file that
// is not inside an npm package gives its own directory.
func PackageRoot(file string) string {
	dir := filepath.Dir(file)
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		parent := filepath.Dir(d)
		underModules := filepath.Base(parent) == "node_modules" ||
			(strings.HasPrefix(filepath.Base(parent), "@") && filepath.Base(filepath.Dir(parent)) == "node_modules")
		if !underModules {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "package.json")); err == nil {
			return d
		}
	}
	return dir
}

// shebang returns the interpreter of a #! script: the program itself, or the program env
// runs ("#!/usr/bin/env node" gives "node").
func shebang(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, maxShebang).ReadSlice('\n')
	if err != nil && len(line) == 0 {
		return ""
	}
	if !bytes.HasPrefix(line, []byte("#!")) {
		return ""
	}
	fields := strings.Fields(string(line[2:]))
	if len(fields) == 0 {
		return ""
	}
	if filepath.Base(fields[0]) == "env" {
		for _, f := range fields[1:] {
			if !strings.HasPrefix(f, "-") {
				return f
			}
		}
		return ""
	}
	return fields[0]
}

// lookIn finds name in path the way execvp does; absolute names are returned as they are.
func searchPath(name, path string) string {
	if filepath.IsAbs(name) {
		return name
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return name
}

// Path is the engine's PATH: the directories of the engine's binaries (as configured, so
// npm's bin/ with its symlinks comes first) and of their interpreters, then base.
func (p *Profile) Path(base string) string {
	var dirs []string
	add := func(d string) {
		for _, x := range dirs {
			if x == d {
				return
			}
		}
		dirs = append(dirs, d)
	}
	// claude-flow looks claude up in PATH: its directory comes first whatever base holds.
	// The engine's own directory only needs to be there at all.
	if p.claude != "" {
		add(filepath.Dir(p.claude))
	}
	if d := filepath.Dir(p.command); !strings.Contains(":"+base+":", ":"+d+":") {
		add(d)
	}
	for _, b := range p.Binaries() {
		in := Inspect(b, strings.Join(dirs, ":")+":"+base)
		if d := filepath.Dir(in.Interpreter); in.Interpreter != "" && !strings.Contains(":"+base+":", ":"+d+":") {
			add(d)
		}
	}
	for _, d := range filepath.SplitList(base) {
		add(d)
	}
	return strings.Join(dirs, ":")
}
