// Package web serves the embedded dashboard (/ui/) and the JavaScript SDK (/sdk/flowgate.js)
// from files compiled into the binary, with strict Content-Security-Policy and cache headers.
package web
