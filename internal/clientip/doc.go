// Package clientip decides which IP address a request came from: the socket peer, or, behind
// trusted proxies only, the first untrusted hop of X-Forwarded-For read from the right.
package clientip
