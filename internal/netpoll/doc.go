// Package netpoll parks idle connections: it watches their sockets for readability with its
// own epoll instance and hands each back when data arrives, so an idle connection holds no goroutine.
package netpoll
