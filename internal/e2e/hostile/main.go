// Command hostile is the e2e tests' hostile engine: it does what a prompt-injected agent with
// a shell would try against the sandbox, as told by words of its objective, and reports each
// attempt as a JSON line. It targets only the addresses and paths the test gives it (loopback).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type probe struct {
	Type   string `json:"type"`
	Probe  string `json:"probe"`
	Target string `json:"target"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

func main() {
	out := json.NewEncoder(os.Stdout)
	words := strings.Fields(strings.Join(os.Args[1:], " "))
	for _, w := range words {
		kind, target, ok := strings.Cut(w, "=")
		if !ok {
			continue
		}
		p := probe{Type: "hostile_probe", Probe: kind, Target: target}
		detail, err := run(kind, target)
		p.OK, p.Detail = err == nil, detail
		if err != nil {
			p.Error = err.Error()
		}
		_ = out.Encode(p)
	}
	_ = out.Encode(map[string]any{"type": "result", "subtype": "success", "is_error": false, "result": "probed"})
}

func run(kind, target string) (string, error) {
	switch kind {
	case "tcp", "mptcp":
		proto := 0
		if kind == "mptcp" {
			proto = unix.IPPROTO_MPTCP
		}
		return "", connectTCP(target, proto)
	case "udp":
		c, err := net.Dial("udp4", target)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_, err = c.Write([]byte("hostile datagram"))
		return "", err
	case "unix":
		c, err := net.DialTimeout("unix", target, 2*time.Second)
		if err != nil {
			return "", err
		}
		c.Close()
		return "", nil
	case "read":
		f, err := os.Open(target)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			_, err = f.Readdirnames(1)
			return "", err
		}
		_, err = f.Read(make([]byte, 1))
		return "", err
	case "listen":
		// Useless if nobody outside can reach it: report the address it got.
		ln, err := net.Listen("tcp4", "0.0.0.0:"+target)
		if err != nil {
			return "", err
		}
		defer ln.Close()
		return ln.Addr().String(), nil
	case "ptrace":
		return "", unix.PtraceAttach(1)
	case "proxy":
		return viaProxy(target)
	case "forkbomb":
		// Start sleepers until fork fails, then keep trying, as a fork bomb does.
		n, _ := strconv.Atoi(target)
		started := 0
		for i := 0; i < n; i++ {
			if err := exec.Command("/bin/sleep", "60").Start(); err == nil {
				started++
			}
		}
		return strconv.Itoa(started), nil
	case "alloc":
		n, _ := strconv.ParseInt(target, 10, 64)
		var hold [][]byte
		for got := int64(0); got < n; got += 1 << 20 {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hold = append(hold, b)
		}
		return strconv.Itoa(len(hold)), nil
	case "fill", "fillmany":
		n, _ := strconv.ParseInt(target, 10, 64)
		chunk := make([]byte, 1<<20)
		var f *os.File
		for written, i := int64(0), 0; written < n; i++ {
			if f == nil || kind == "fillmany" {
				if f != nil {
					f.Close()
				}
				var err error
				if f, err = os.Create(fmt.Sprintf("fill-%d", i)); err != nil {
					return "", err
				}
			}
			if _, err := f.Write(chunk); err != nil {
				return strconv.FormatInt(written, 10), err
			}
			written += int64(len(chunk))
		}
		if f != nil {
			f.Close()
		}
		return "", nil
	}
	return "", fmt.Errorf("unknown probe %q", kind)
}

func connectTCP(target string, proto int) error {
	ap, err := net.ResolveTCPAddr("tcp4", target)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	return unix.Connect(fd, sa)
}

// viaProxy sends CONNECT target to $HTTPS_PROXY, then a line, and expects it echoed.
func viaProxy(target string) (string, error) {
	pu, err := url.Parse(os.Getenv("HTTPS_PROXY"))
	if err != nil || pu.Host == "" {
		return "", fmt.Errorf("no HTTPS_PROXY")
	}
	c, err := net.DialTimeout("tcp4", pu.Host, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return fmt.Sprint(resp.StatusCode), fmt.Errorf("proxy answered %s", resp.Status)
	}
	fmt.Fprint(c, "hello through the proxy\n")
	line, err := br.ReadString('\n')
	if err != nil {
		return "200", err
	}
	return "200 " + strings.TrimSpace(line), nil
}
