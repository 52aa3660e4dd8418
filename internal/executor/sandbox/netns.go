package sandbox

import (
	"fmt"
	"io"
	"net"
	"strconv"

	"golang.org/x/sys/unix"
)

// enterNetNS moves the calling thread (the init's locked main thread, which forks the
// engine) into a new network namespace that has only loopback, and, for port > 0, relays
// 127.0.0.1:port inside it to 127.0.0.1:port outside: the gateway's egress proxy for this
// task, the engine's only way out. The relay's listening socket is created on this thread,
// so it lives in the new namespace; the relay dials from the runtime's other threads, which
// stay in the host's (a locked thread never hands its state to new threads: Go starts them
// from a template thread). It needs CAP_SYS_ADMIN and CAP_NET_ADMIN in the init's user
// namespace: a root init, or a relayed init mapped to root (--mount-proc).
func enterNetNS(port int) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	if port <= 0 {
		return nil
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("relay listen: %w", err)
	}
	go relayLoop(ln, "127.0.0.1:"+strconv.Itoa(port))
	return nil
}

// loopbackUp brings lo up in the current (new) network namespace: it starts down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	ifr.SetUint16(unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// relayLoop runs for the init's whole life: the init exits when its task ends, and the
// listener and every relayed connection go with it.
func relayLoop(ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp4", target)
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}
