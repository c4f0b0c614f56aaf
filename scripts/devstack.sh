#!/usr/bin/env bash
# devstack.sh runs the Portcullis dev stack in the foreground (make run): PostgreSQL, the
# control plane with embedded NATS and the dev JWT issuer, a mock OpenAI-compatible
# upstream, and two data planes (eu and us). Ctrl-C, a closed terminal (SIGHUP) and SIGTERM
# (to the script, to make, or to make's whole process group) stop everything it started:
# SIGTERM to each process's group, SIGKILL to what is left after PORTCULLIS_DEV_STOP_SECONDS
# (default 8), then PostgreSQL if it started its own cluster.
#
# PostgreSQL, in order of preference:
#   1. PORTCULLIS_DATABASE_URL, if set;
#   2. a server answering on 127.0.0.1:5432 (database portcullis_dev, created if missing);
#   3. a cluster of its own under .data/pg (initdb/pg_ctl) on a free port;
#   4. otherwise it stops and says which package to install.
#
# Listen addresses (host:port), overridable from the environment:
#   PORTCULLIS_DEV_CONTROLPLANE_LISTEN  control plane        (default 127.0.0.1:8080)
#   PORTCULLIS_DEV_EU_LISTEN            data plane eu        (default 127.0.0.1:8081)
#   PORTCULLIS_DEV_US_LISTEN            data plane us        (default 127.0.0.1:8082)
#   PORTCULLIS_MOCK_LISTEN              mock upstream        (default 127.0.0.1:9100)
#   PORTCULLIS_MOCK_CONTROL_LISTEN      mock's control API   (default 127.0.0.1:9101; empty turns it off)
#   PORTCULLIS_EMBEDDED_NATS_LISTEN     embedded nats-server (default 127.0.0.1:14222)
# The mock's control API (POST/GET/DELETE /mock/fail) makes one deployment fail for a while;
# it has no authentication, so keep it on loopback.
# PORTCULLIS_DEV_WAIT_SECONDS bounds each readiness wait (default 60).
# PORTCULLIS_DEV_DATA_DIR moves .data (admin token, keys, tokens, logs, NATS store) elsewhere.
#
# Provider keys, in order of preference:
#   1. PORTCULLIS_DEV_VAULT=1 (or true): a throwaway in-memory Vault (tests/vaultdev,
#      built by make vaultdev, or the launcher binary PORTCULLIS_DEV_VAULT_BIN names) on
#      PORTCULLIS_DEV_VAULT_LISTEN (default 127.0.0.1:8200);
#   2. VAULT_ADDR and VAULT_TOKEN, if both are set and VAULT_ADDR is on this machine
#      (PORTCULLIS_DEV_VAULT_ALLOW_REMOTE=true allows another: the demo writes its keys
#      over secret/portcullis/* and secret/portcullis-admin/openai there);
#   3. otherwise the file .data/dev-keys/openai.key (key_source file).
# With a Vault, the seed writes every deployment's key to KV v2 at
# secret/portcullis/<deployment> (key_source vault), the mock upstream accepts only the
# valid keys, and its OpenAI admin API mints the openai deployments' keys, so that
# "portcullis secrets rotate" and "revoke" work end to end. Our binaries read the token
# from .data/vault-token, never from the environment.
#
# Logs go to .data/logs/<name>.log. Dev tokens are written to .data/dev-tokens/ (mode 0600)
# rather than printed, so they do not end up in terminal scrollback or CI logs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
DATA=${PORTCULLIS_DEV_DATA_DIR:-$ROOT/.data}
LOGS=$DATA/logs
KEY_FILE=$DATA/dev-keys/openai.key
TOKENS=$DATA/dev-tokens
VAULT_TOKEN_FILE=$DATA/vault-token
ACCEPT_KEYS_FILE=$DATA/dev-keys/accepted.keys # the keys the mock accepts, written by the seed
ADMIN_KEY_FILE=$DATA/dev-keys/openai-admin.key # the mock's OpenAI admin API key

CP_LISTEN=${PORTCULLIS_DEV_CONTROLPLANE_LISTEN:-127.0.0.1:8080}
EU_LISTEN=${PORTCULLIS_DEV_EU_LISTEN:-127.0.0.1:8081}
US_LISTEN=${PORTCULLIS_DEV_US_LISTEN:-127.0.0.1:8082}
MOCK_LISTEN=${PORTCULLIS_MOCK_LISTEN:-127.0.0.1:9100}
MOCK_CONTROL_LISTEN=${PORTCULLIS_MOCK_CONTROL_LISTEN-127.0.0.1:9101} # set but empty: no control API
NATS_LISTEN=${PORTCULLIS_EMBEDDED_NATS_LISTEN:-127.0.0.1:14222}
VAULT_LISTEN=${PORTCULLIS_DEV_VAULT_LISTEN:-127.0.0.1:8200}
WAIT_SECONDS=${PORTCULLIS_DEV_WAIT_SECONDS:-60}
CP_URL=http://$CP_LISTEN

STOP_SECONDS=${PORTCULLIS_DEV_STOP_SECONDS:-8}
[[ $STOP_SECONDS =~ ^[0-9]+$ ]] || STOP_SECONDS=8

PIDS=()   # started processes, in start order; each leads its own process group
NAMES=()
STARTING=""       # the name of the process start is starting
STARTING_AFTER="" # $! before that
LEFT=()           # wait_groups' answer
PG_STARTED=""   # data dir of a cluster this script started
PG_BIN=""
VAULT_URL=""    # the Vault holding the keys; empty: the file key source

say() { printf '%s\n' "devstack: $*" || true; }
die() { printf '%s\n' "devstack: error: $*" >&2; exit 1; }

# ---- process control --------------------------------------------------------------------

# signal_groups SIG PID...: send SIG to the process group each PID leads (start), or to
# the PID alone if it does not lead one yet (it is about to call setsid).
signal_groups() {
	local sig=$1 pid
	shift
	for pid; do
		kill "-$sig" -- "-$pid" 2>/dev/null || kill "-$sig" "$pid" 2>/dev/null || true
	done
}

# wait_groups TICKS PID...: wait at most TICKS tenths of a second until no process is
# left of the PIDs' groups (or of the PIDs, if they lead none yet); LEFT holds those
# still alive then. It runs in this shell, never in a subshell: kill -0 counts a
# zombie as alive, and only this shell reaps its children, which it does while it
# waits for sleep.
wait_groups() {
	local ticks=$1 pid
	shift
	while :; do
		LEFT=()
		for pid; do
			if kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null; then
				LEFT+=("$pid")
			fi
		done
		((${#LEFT[@]} > 0 && ticks > 0)) || return 0
		sleep 0.1
		ticks=$((ticks - 1))
	done
}

# name_of PID: the name start gave PID.
name_of() {
	local i
	for i in "${!PIDS[@]}"; do
		[[ ${PIDS[i]} == "$1" ]] && { printf '%s' "${NAMES[i]}"; return 0; }
	done
	printf '%s' "$1"
}

# stop_all: stop every process group start started, whatever stopped it: SIGTERM first
# to the data planes, the mock and any other dependent, then (after at most half of
# STOP_SECONDS) to the control plane and the Vault they talk to; SIGKILL to whatever
# is left of any group when STOP_SECONDS have passed. Each started process leads its
# own group, so this reaches the processes it started in turn too.
stop_all() {
	local i pid first=() last=() ticks=$((STOP_SECONDS * 10))
	for i in "${!PIDS[@]}"; do
		case ${NAMES[i]} in
		controlplane | vault) last+=("${PIDS[i]}") ;;
		*) first+=("${PIDS[i]}") ;;
		esac
	done
	signal_groups TERM "${first[@]}"
	wait_groups $((ticks / 2)) "${first[@]}"
	signal_groups TERM "${last[@]}"
	wait_groups $((ticks - ticks / 2)) "${PIDS[@]}"
	if ((${#LEFT[@]} > 0)); then
		for pid in "${LEFT[@]}"; do
			say "$(name_of "$pid") did not stop within ${STOP_SECONDS}s of SIGTERM; killing it"
		done
		signal_groups KILL "${LEFT[@]}"
		wait_groups 20 "${LEFT[@]}"
		((${#LEFT[@]} == 0)) || say "still running after SIGKILL: the process groups of ${LEFT[*]}"
	fi
	for pid in "${PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || wait "$pid" 2>/dev/null # reap; never wait on one that survived SIGKILL
	done
}

# stop_postgres: stop the cluster this script started (or was starting), fast, and at
# once if that does not do within 5 s.
stop_postgres() {
	[[ -n $PG_STARTED && -f $PG_STARTED/postmaster.pid ]] || return 0
	pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_STARTED" stop -m fast -w -t 5 >/dev/null 2>&1 ||
		pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_STARTED" stop -m immediate -w -t 5 >/dev/null 2>&1 ||
		say "could not stop PostgreSQL in $PG_STARTED; stop it with: pg_ctl -D $PG_STARTED stop"
}

# cleanup RC stops everything and exits with RC. It runs on exit, whatever the cause (an
# error, the end of a process), and on SIGINT, SIGTERM or SIGHUP, which make's process
# group gets all at once: make passes SIGTERM on to this script too, so a second signal
# often comes while the first is handled. Further signals are then ignored, never reset
# to their default, so that none can cut the cleanup short and leave the stack running;
# and it goes on if its output is gone (a closed terminal, a dead pipe).
cleanup() {
	local rc=$1
	CLEANING=1
	trap '' INT TERM HUP PIPE
	trap - EXIT
	set +eu
	# A signal between start's "&" and its bookkeeping leaves the new process in $!.
	if [[ -n $STARTING && -n $! && $! != "$STARTING_AFTER" && " ${PIDS[*]} " != *" $! "* ]]; then
		PIDS+=("$!")
		NAMES+=("$STARTING")
	fi
	if ((${#PIDS[@]} > 0)); then
		say "stopping..."
		stop_all 2>/dev/null # not bash's notices of the processes it killed
	fi
	stop_postgres
	[[ -z $VAULT_URL ]] || rm -f "$VAULT_TOKEN_FILE"
	((${#PIDS[@]} > 0)) && say "stopped"
	exit "$rc"
}

# on_signal RC: the handler of SIGINT, SIGTERM and SIGHUP. Bash runs a pending handler
# before any command, even inside a handler or the exit trap, so this one may run again
# before its first command, or while cleanup has begun: in the first case the inner run
# does the cleanup (and exits), in the second the cleanup under way goes on.
on_signal() {
	trap '' INT TERM HUP
	[[ -z $CLEANING ]] || return 0
	cleanup "$1"
}
CLEANING=""
trap 'cleanup $?' EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# start NAME CMD...: run CMD in its own session (so its whole process group can be
# stopped), with output to .data/logs/NAME.log. Environment assignments go before CMD
# via env(1).
start() {
	local name=$1
	shift
	: >"$LOGS/$name.log"
	STARTING=$name STARTING_AFTER=${!:-}
	setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
	PIDS+=("$!")
	NAMES+=("$name")
	STARTING=""
}

pid_of() {
	local i
	for i in "${!NAMES[@]}"; do
		[[ ${NAMES[i]} == "$1" ]] && { echo "${PIDS[i]}"; return 0; }
	done
	return 1
}

show_log() { say "last lines of $LOGS/$1.log:"; tail -n 30 "$LOGS/$1.log" >&2 || true; }

# wait_http NAME URL [CODE]: wait until URL answers (with CODE, if given), while process
# NAME stays alive, for at most WAIT_SECONDS.
wait_http() {
	local name=$1 url=$2 want=${3:-} pid code deadline=$((SECONDS + WAIT_SECONDS))
	pid=$(pid_of "$name")
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			show_log "$name"
			die "$name exited before $url answered"
		fi
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
		if [[ -n $want && $code == "$want" ]] || [[ -z $want && $code != 000 ]]; then
			return 0
		fi
		sleep 0.2
	done
	show_log "$name"
	die "$name: $url did not answer${want:+ $want} within ${WAIT_SECONDS}s"
}

# tcp_answers HOST PORT: whether something accepts TCP connections there.
tcp_answers() {
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

require_free() {
	local listen=$1 what=$2
	if tcp_answers "${listen%:*}" "${listen##*:}"; then
		die "$listen ($what) is already in use; is another dev stack running? Override it with the variable named in scripts/devstack.sh"
	fi
}

# ---- PostgreSQL ---------------------------------------------------------------------------

pg_answers() {
	if command -v pg_isready >/dev/null; then
		pg_isready -q -h "$1" -p "$2" -t 2
	else
		tcp_answers "$1" "$2"
	fi
}

# pg_as_owner CMD...: run a PostgreSQL server command as a non-root user (initdb and
# postgres refuse to run as root). With PG_OWN_SESSION set, in a session of its own.
pg_as_owner() {
	local session=()
	[[ -z ${PG_OWN_SESSION:-} ]] || session=(setsid)
	if ((EUID == 0)); then
		"${session[@]}" runuser -u postgres -- "$@"
	else
		"${session[@]}" "$@"
	fi
}

find_pg_bin() {
	local d
	if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
		dirname "$(command -v pg_ctl)"
		return 0
	fi
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
		[[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
	done
	return 1
}

free_port() {
	local p
	for ((p = 54329; p < 54400; p++)); do
		tcp_answers 127.0.0.1 "$p" || { echo "$p"; return 0; }
	done
	die "no free port in 54329-54399 for a dev PostgreSQL"
}

# own_cluster: start (creating it the first time) a cluster under .data/pg. It persists
# between runs, like the admin token it goes with; make clean-data removes it.
own_cluster() {
	local dir=$DATA/pg port
	PG_BIN=$(find_pg_bin) || die "no PostgreSQL found: install the 'postgresql' package (e.g. apt-get install postgresql), start a server on 127.0.0.1:5432, or set PORTCULLIS_DATABASE_URL"
	if ((EUID == 0)); then
		id postgres >/dev/null 2>&1 || die "running as root, a dev PostgreSQL needs the 'postgres' user (install the 'postgresql' package) or set PORTCULLIS_DATABASE_URL"
		chmod 0711 "$DATA" # the postgres user must reach .data/pg; listing .data stays root's
	fi
	mkdir -p "$dir"
	chmod 0700 "$dir"
	((EUID == 0)) && chown postgres: "$dir"
	if [[ ! -f $dir/PG_VERSION ]]; then
		say "creating a PostgreSQL cluster in $dir"
		pg_as_owner "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >"$LOGS/initdb.log" 2>&1 ||
			{ show_log initdb; die "initdb failed"; }
		printf "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n" >>"$dir/postgresql.conf"
	fi
	if pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
		say "stopping a PostgreSQL left running in $dir"
		pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" stop -m fast -w >/dev/null
	fi
	port=$(free_port)
	: >"$LOGS/postgres.log"
	((EUID == 0)) && chown postgres: "$LOGS/postgres.log"
	# pg_ctl runs in a session of its own, so that a signal to make's process group cannot
	# stop it halfway and leave a server starting up, with no pid file to stop it by yet;
	# the signal's handler runs once pg_ctl is done, and stops the server.
	PG_STARTED=$dir
	PG_OWN_SESSION=1 pg_as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$LOGS/postgres.log" -o "-p $port" -w -t 60 start >/dev/null ||
		{ show_log postgres; die "PostgreSQL in $dir did not start"; }
	DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	say "PostgreSQL: own cluster in $dir on 127.0.0.1:$port"
}

find_postgres() {
	if [[ -n ${PORTCULLIS_DATABASE_URL:-} ]]; then
		DATABASE_URL=$PORTCULLIS_DATABASE_URL
		say "PostgreSQL: PORTCULLIS_DATABASE_URL"
		return
	fi
	if pg_answers 127.0.0.1 5432; then
		command -v psql >/dev/null || die "PostgreSQL answers on 127.0.0.1:5432 but psql is missing to create database portcullis_dev: install 'postgresql-client' or set PORTCULLIS_DATABASE_URL"
		local psql=(psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
		local exists
		exists=$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'portcullis_dev'") ||
			die "cannot connect to PostgreSQL on 127.0.0.1:5432 as user postgres without a password; set PORTCULLIS_DATABASE_URL"
		if [[ $exists != 1 ]]; then
			"${psql[@]}" -c "CREATE DATABASE portcullis_dev" >/dev/null
			say "created database portcullis_dev"
		fi
		DATABASE_URL="postgres://postgres@127.0.0.1:5432/portcullis_dev?sslmode=disable"
		say "PostgreSQL: 127.0.0.1:5432, database portcullis_dev"
		return
	fi
	own_cluster
}

# ---- Vault ----------------------------------------------------------------------------------

# is_local_url URL: whether URL's host is this machine (loopback).
is_local_url() {
	local host=${1#*://}
	host=${host%%/*}
	host=${host##*@}
	case $host in
	localhost | localhost:* | 127.* | "[::1]" | "[::1]:"*) return 0 ;;
	esac
	return 1
}

# start_dev_vault: start the throwaway Vault launcher (docs/vault-dev.md) on
# VAULT_LISTEN, its root token written to VAULT_TOKEN_FILE, and set VAULT_URL.
start_dev_vault() {
	local bin=${PORTCULLIS_DEV_VAULT_BIN:-} pid deadline=$((SECONDS + WAIT_SECONDS))
	if [[ -z $bin ]]; then
		say "building the dev Vault launcher (make vaultdev: minutes the first time, seconds after)"
		"${MAKE:-make}" --no-print-directory -s vaultdev
		bin=$ROOT/bin/vaultdev
	fi
	[[ -x $bin ]] || die "the dev Vault launcher $bin is not an executable file (PORTCULLIS_DEV_VAULT_BIN)"
	rm -f "$VAULT_TOKEN_FILE"
	start vault "$bin" -listen "$VAULT_LISTEN" -token-file "$VAULT_TOKEN_FILE" -exit-on-stdin-eof=false
	pid=$(pid_of vault)
	# Its first line on stdout is {"addr":"http://...","token_file":"..."}.
	while [[ -z $VAULT_URL ]]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			show_log vault
			die "the dev Vault exited before it served"
		fi
		((SECONDS < deadline)) || { show_log vault; die "the dev Vault did not serve within ${WAIT_SECONDS}s"; }
		sleep 0.1
		VAULT_URL=$(sed -n '/^{"addr":"/{s/^{"addr":"\([^"]*\)".*/\1/p;q}' "$LOGS/vault.log") # the first; no pipe to SIGPIPE
	done
}

# dev_vault_wanted: whether PORTCULLIS_DEV_VAULT asks for a dev Vault.
dev_vault_wanted() { [[ ${PORTCULLIS_DEV_VAULT:-} == 1 || ${PORTCULLIS_DEV_VAULT:-} == true ]]; }

# setup_vault: find the Vault that holds the keys (see the top of this file) and set
# VAULT_URL, or leave it empty for the file key source.
setup_vault() {
	if dev_vault_wanted; then
		[[ -z ${VAULT_ADDR:-} ]] || say "PORTCULLIS_DEV_VAULT is set: starting a dev Vault, not using VAULT_ADDR"
		start_dev_vault
		say "Vault: a dev Vault in memory on $VAULT_URL (its state ends with make run)"
	elif [[ -n ${VAULT_ADDR:-} && -n ${VAULT_TOKEN:-} ]]; then
		if is_local_url "$VAULT_ADDR" || [[ ${PORTCULLIS_DEV_VAULT_ALLOW_REMOTE:-} == true ]]; then
			VAULT_URL=${VAULT_ADDR%/}
			(umask 077 && printf '%s\n' "$VAULT_TOKEN" >"$VAULT_TOKEN_FILE")
			say "Vault: VAULT_ADDR, $VAULT_URL (token copied to $VAULT_TOKEN_FILE for the gateway)"
		else
			say "VAULT_ADDR $VAULT_ADDR is not on this machine, and the demo writes its keys over secret/portcullis/* there: not using it (PORTCULLIS_DEV_VAULT_ALLOW_REMOTE=true would)"
		fi
	elif [[ -n ${VAULT_ADDR:-} ]]; then
		say "VAULT_ADDR is set but VAULT_TOKEN is not: not using that Vault"
	fi
	unset VAULT_TOKEN # the gateway reads its token from a file, never from the environment
	if [[ -z $VAULT_URL ]]; then
		say "no Vault (set VAULT_ADDR and VAULT_TOKEN, or PORTCULLIS_DEV_VAULT=1): deployments use the file key source"
	fi
}

# ---- the stack ------------------------------------------------------------------------------

dev_key() {
	if [[ ! -s $KEY_FILE ]]; then
		(
			umask 077
			mkdir -p "$(dirname "$KEY_FILE")"
			printf 'dev-%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$KEY_FILE"
		)
		say "wrote a random dev upstream key to $KEY_FILE"
	fi
	chmod 0600 "$KEY_FILE"
}

# audit_key: the key of the audit events' prompt and response hashes, shared by both
# data planes (.data/dev-keys/audit.key, mode 0600).
audit_key() {
	if [[ ! -s $DATA/dev-keys/audit.key ]]; then
		(
			umask 077
			mkdir -p "$DATA/dev-keys"
			head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DATA/dev-keys/audit.key"
		)
	fi
	chmod 0600 "$DATA/dev-keys/audit.key"
}

# admin_token_works: the admin token file exists and the control plane accepts it.
admin_token_works() {
	[[ -f $DATA/admin-token ]] || return 1
	local code
	# The header comes from a file descriptor so the token never shows in the process list.
	code=$(curl -s -o /dev/null -w '%{http_code}' -H @<(printf 'Authorization: Bearer %s\n' "$(<"$DATA/admin-token")") \
		"$CP_URL/admin/v1/tenants?limit=1" 2>/dev/null) || return 1
	[[ $code == 200 ]]
}

# mint CLIENT: mint a token for CLIENT into .data/dev-tokens/CLIENT.jwt (mode 0600).
mint() {
	local client=$1 out
	out=$(PORTCULLIS_ADMIN_URL=$CP_URL PORTCULLIS_DATA_DIR=$DATA bin/portcullis tokens mint --client "$client" 2>>"$LOGS/portcullis.log") ||
		{ show_log portcullis; die "portcullis tokens mint --client $client failed"; }
	out=$(printf '%s\n' "$out" | awk 'NF { last = $0 } END { print last }')
	[[ -n $out ]] || die "portcullis tokens mint --client $client printed no token"
	(umask 077 && printf '%s\n' "$out" >"$TOKENS/$client.jwt")
}

# print_summary: what runs where, and what to try.
print_summary() {
	local control_line="" fail_example="" keys_line keys_example="" cli_env=""
	if [[ -n $MOCK_CONTROL_LISTEN ]]; then
		control_line="  mock control    http://$MOCK_CONTROL_LISTEN/mock/fail   (no auth: keep it on loopback)
"
		fail_example="
Make openai-eu answer 500 for a minute, then send that again a few times and watch the
X-Portcullis-Fallback header (curl -i) and http://$EU_LISTEN/metrics (see README.md):

curl -s -XPOST http://$MOCK_CONTROL_LISTEN/mock/fail -d '{\"deployment\":\"openai-eu\",\"mode\":\"5xx\",\"for_seconds\":60}'
"
	fi
	if [[ $CP_URL != http://127.0.0.1:8080 || $DATA != "$ROOT/.data" ]]; then
		cli_env="export PORTCULLIS_ADMIN_URL=$CP_URL PORTCULLIS_DATA_DIR=$DATA
"
	fi
	if [[ -n $VAULT_URL ]]; then
		keys_line="  Vault           $VAULT_URL   (keys at secret/portcullis/<deployment>, token in $VAULT_TOKEN_FILE)"
		keys_example="
Rotate openai-eu's key while requests flow: the mock's admin API mints the new key and
the old one stays valid for 3 minutes. Or revoke every openai key at once: new ones are
minted and the mock refuses the old ones (see README.md):

${cli_env}bin/portcullis secrets rotate --provider openai --deployment openai-eu
bin/portcullis secrets revoke --provider openai --reason \"key_suspected_compromise\"
bin/portcullis secrets status
"
	else
		keys_line="  upstream key    $KEY_FILE   (key_source file; PORTCULLIS_DEV_VAULT=1 puts the keys in a dev Vault)"
	fi
	cat <<EOF

Portcullis dev stack is up (logs in .data/logs/, Ctrl-C stops everything).

  control plane   $CP_URL   (admin API $CP_URL/admin/v1, admin token in .data/admin-token)
  data plane eu   http://$EU_LISTEN
  data plane us   http://$US_LISTEN
  mock upstream   http://$MOCK_LISTEN   (deployment NAME at http://$MOCK_LISTEN/d/NAME)
${control_line}  embedded NATS   nats://$NATS_LISTEN
$keys_line
  tokens          $TOKENS/moltbot-agent-07.jwt, $TOKENS/premium-app.jwt

Try it:

curl -sS http://$EU_LISTEN/v1/chat/completions \\
  -H "Authorization: Bearer \$(cat $TOKENS/moltbot-agent-07.jwt)" \\
  -H 'Content-Type: application/json' \\
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
$keys_example$fail_example
EOF
}

main() {
	local tty_fd="" fd
	for fd in 0 1 2; do
		[[ -t $fd ]] && { tty_fd=$fd; break; }
	done
	command -v go >/dev/null || die "go is not installed (https://go.dev/dl/)"
	command -v curl >/dev/null || die "curl is not installed"
	say "building ./bin"
	"${MAKE:-make}" --no-print-directory -s build

	mkdir -p "$DATA" "$LOGS"
	chmod 0700 "$DATA" # admin token, keys and tokens live here
	(umask 077 && mkdir -p "$TOKENS")
	require_free "$CP_LISTEN" "control plane"
	require_free "$EU_LISTEN" "data plane eu"
	require_free "$US_LISTEN" "data plane us"
	require_free "$MOCK_LISTEN" "mock upstream"
	[[ -z $MOCK_CONTROL_LISTEN ]] || require_free "$MOCK_CONTROL_LISTEN" "mock upstream control API"
	require_free "$NATS_LISTEN" "embedded NATS"
	! dev_vault_wanted || require_free "$VAULT_LISTEN" "dev Vault"

	find_postgres
	setup_vault
	local vault_env=(PORTCULLIS_VAULT_ADDR=) seed_keys=(--key-file "$KEY_FILE") mock_keys=()
	if [[ -n $VAULT_URL ]]; then
		vault_env=(PORTCULLIS_VAULT_ADDR="$VAULT_URL" PORTCULLIS_VAULT_AUTH=token PORTCULLIS_VAULT_TOKEN_FILE="$VAULT_TOKEN_FILE")
		seed_keys=(--vault-addr "$VAULT_URL" --vault-token-file "$VAULT_TOKEN_FILE"
			--accept-keys-file "$ACCEPT_KEYS_FILE" --admin-key-file "$ADMIN_KEY_FILE")
		mock_keys=(--accept-keys-file "$ACCEPT_KEYS_FILE" --admin-key-file "$ADMIN_KEY_FILE")
	else
		dev_key
	fi

	start controlplane env \
		PORTCULLIS_DATABASE_URL="$DATABASE_URL" \
		PORTCULLIS_LISTEN="$CP_LISTEN" \
		PORTCULLIS_NATS_URL= \
		PORTCULLIS_EMBEDDED_NATS_LISTEN="$NATS_LISTEN" \
		PORTCULLIS_DATA_DIR="$DATA" \
		PORTCULLIS_DEV_ISSUER=true \
		PORTCULLIS_ISSUER_URL="$CP_URL" \
		"${vault_env[@]}" \
		bin/controlplane
	say "waiting for the control plane on $CP_URL"
	wait_http controlplane "$CP_URL/healthz" 200

	if ! admin_token_works; then
		# The database already had an admin token whose file is not here, or the file
		# here is stale (say, another checkout shares the same Postgres): issue a new one.
		say "$DATA/admin-token is missing or not accepted by this database; issuing a new admin token"
		PORTCULLIS_DATABASE_URL="$DATABASE_URL" PORTCULLIS_DATA_DIR="$DATA" \
			bin/controlplane admin-token reset >"$LOGS/admin-token-reset.log" 2>&1 ||
			{ show_log admin-token-reset; die "controlplane admin-token reset failed"; }
	fi

	# Deployment NAME gets the base URL http://$MOCK_LISTEN/d/NAME, so the mock can tell
	# the deployments apart. With a Vault, the seed also writes the keys there and the
	# mock's key files, so it runs before the mock starts.
	say "seeding the demo tenant"
	PORTCULLIS_ADMIN_URL=$CP_URL PORTCULLIS_DATA_DIR=$DATA bin/portcullis seed demo \
		--upstream-url "http://$MOCK_LISTEN" "${seed_keys[@]}" >"$LOGS/seed.log" 2>&1 ||
		{ show_log seed; die "portcullis seed demo failed"; }

	start mockupstream env PORTCULLIS_MOCK_LISTEN="$MOCK_LISTEN" PORTCULLIS_MOCK_CONTROL_LISTEN="$MOCK_CONTROL_LISTEN" \
		bin/mockupstream --listen "$MOCK_LISTEN" --control-listen "$MOCK_CONTROL_LISTEN" "${mock_keys[@]}"
	wait_http mockupstream "http://$MOCK_LISTEN/v1/models"
	[[ -z $MOCK_CONTROL_LISTEN ]] || wait_http mockupstream "http://$MOCK_CONTROL_LISTEN/mock/fail" 200

	if [[ -n $VAULT_URL ]]; then
		# The openai deployments' keys are service accounts of the mock's admin API, so
		# that a rotation or revocation deletes the old one there: each run mints new ones.
		say "minting the openai deployments' keys with the mock's admin API (portcullis secrets rotate)"
		PORTCULLIS_ADMIN_URL=$CP_URL PORTCULLIS_DATA_DIR=$DATA bin/portcullis secrets rotate --provider openai \
			--reason "make run: keys minted by the mock upstream's admin API" >"$LOGS/rotate.log" 2>&1 ||
			{ show_log rotate; die "portcullis secrets rotate --provider openai failed"; }
	fi

	audit_key
	local region listen
	for region in eu us; do
		listen=$EU_LISTEN
		[[ $region == us ]] && listen=$US_LISTEN
		start "dataplane-$region" env \
			PORTCULLIS_REGION="$region" \
			PORTCULLIS_LISTEN="$listen" \
			PORTCULLIS_WORKER_ID="$region-1" \
			PORTCULLIS_NATS_URL="nats://$NATS_LISTEN" \
			PORTCULLIS_JWT_ISSUER="$CP_URL" \
			PORTCULLIS_JWKS_URL="$CP_URL/.well-known/jwks.json" \
			PORTCULLIS_EXPOSE_ROUTING_HEADERS=true \
			PORTCULLIS_AUDIT_SPOOL_DIR="$DATA/audit-spool/$region" \
			PORTCULLIS_AUDIT_SINK="$LOGS/audit-$region.jsonl" \
			PORTCULLIS_AUDIT_KEY_FILE="$DATA/dev-keys/audit.key" \
			"${vault_env[@]}" \
			bin/dataplane
	done
	say "waiting for the data planes"
	wait_http dataplane-eu "http://$EU_LISTEN/readyz" 200
	wait_http dataplane-us "http://$US_LISTEN/readyz" 200

	mint moltbot-agent-07
	mint premium-app
	mint analytics-svc

	print_summary

	# Run until a signal, until one of the processes dies, or until the terminal hangs
	# up. A hangup signals the terminal's session leader only; when that is make itself
	# (ssh -t host make run, a terminal window running make run) make waits for this
	# script without passing the signal on, so the script looks for itself.
	local rc i
	while :; do
		for i in "${!PIDS[@]}"; do
			if ! kill -0 "${PIDS[i]}" 2>/dev/null; then
				rc=0
				wait "${PIDS[i]}" || rc=$?
				show_log "${NAMES[i]}"
				die "${NAMES[i]} exited (status $rc)"
			fi
		done
		if [[ -n $tty_fd && ! -t $tty_fd ]]; then
			say "the terminal hung up"
			exit 129
		fi
		sleep 1
	done
}

# Run unless sourced (sourcing lets one exercise a single step by hand).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	main "$@"
fi
