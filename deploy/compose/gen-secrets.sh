#!/bin/sh
# Generates every secret deploy/compose needs into ./secrets (gitignored), each owned by the
# user of the container that reads it, mode 0400/0600. Existing files are kept: rerunning is safe.
# Run as root (or with sudo) so the files can be given to the containers' users; needs openssl.
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0755 secrets

gen() { # gen FILE COMMAND...: write COMMAND's output to FILE unless it exists
	f="secrets/$1"
	shift
	if [ ! -s "$f" ]; then
		"$@" >"$f.tmp"
		mv "$f.tmp" "$f"
		echo "generated $f"
	fi
}
hex32() { openssl rand -hex 32; }
ed25519() { openssl genpkey -algorithm ed25519; }

gen signing.key ed25519
gen audit-checkpoint.key ed25519
gen fingerprint.key hex32
gen master.key hex32
gen postgres-password hex32
gen redis-password hex32
gen grafana-admin-password hex32
gen pgpass sh -c 'printf "postgres:5432:flowgate:flowgate:%s\n" "$(cat secrets/postgres-password)"'
gen redis.env sh -c 'printf "FLOWGATE_CLUSTER_REDIS_URL=redis://default:%s@redis:6379/0\n" "$(cat secrets/redis-password)"'
# Redis checks the password against its SHA-256: the ACL file holds no plaintext.
gen redis-users.acl sh -c 'printf "user default on #%s ~* &* +@all\n" "$(tr -d "\n" <secrets/redis-password | openssl dgst -sha256 -r | cut -d" " -f1)"'
gen alertmanager-webhook-url sh -c 'printf "http://127.0.0.1:9/replace-with-your-receiver\n"'

own() { # own UID:GID MODE FILE...
	ug=$1 mode=$2
	shift 2
	chmod "$mode" "$@"
	if [ "$(id -u)" = 0 ]; then
		chown "$ug" "$@"
	else
		echo "not root: run  sudo chown $ug $*  (the container user must own them)" >&2
	fi
}
# flowgate (uid 10001) refuses key files readable by group or others.
own 10001:10001 0600 secrets/signing.key secrets/audit-checkpoint.key secrets/fingerprint.key \
	secrets/master.key secrets/pgpass
own 999:999 0400 secrets/postgres-password
own 999:999 0444 secrets/redis-users.acl
own 472:0 0400 secrets/grafana-admin-password
own 65534:65534 0400 secrets/alertmanager-webhook-url
# redis.env is read by docker compose itself, redis-password by you.
chmod 0600 secrets/redis.env secrets/redis-password

# TLS for compose.cluster.yaml's nginx: a self-signed certificate unless you put yours here.
if [ ! -s secrets/tls.crt ]; then
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
		-subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
		-keyout secrets/tls.key -out secrets/tls.crt 2>/dev/null
	echo "generated secrets/tls.crt (self-signed, 30 days)"
fi
own 101:101 0400 secrets/tls.key
chmod 0444 secrets/tls.crt
