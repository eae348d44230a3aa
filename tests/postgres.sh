#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for the tests (tests/run.sh) and for developers.
#
#   tests/postgres.sh start DIR   initdb a fresh cluster in DIR (empty or absent), start it on
#                                 127.0.0.1 on a free port, create the role `riposte` (LOGIN
#                                 CREATEDB, a generated password) and print one line on stdout:
#                                 postgres://riposte:PASSWORD@127.0.0.1:PORT/postgres?sslmode=require
#                                 (also written to DIR/url; the server logs to DIR/log). TCP
#                                 is TLS only, with a certificate for 127.0.0.1 issued by a
#                                 throwaway CA whose certificate is DIR/ca.pem.
#   tests/postgres.sh stop DIR    stop that cluster and remove DIR; succeeds if already stopped.
#
# Missing server binaries (initdb, pg_ctl, postgres under /usr/lib/postgresql/*/bin) are
# installed from Debian's packages when run as root. The server refuses to run as root, so as
# root the cluster belongs to the `postgres` system user. Nothing but the socket in DIR and the
# port on 127.0.0.1 is opened: the socket trusts whoever can enter DIR (mode 0700), TCP asks
# for TLS and the password (scram-sha-256) and only from 127.0.0.1. The certificates are made
# with openssl (Debian's openssl package when missing).
set -euo pipefail

MARKER=riposte-postgres
ROLE=riposte

die() {
  echo "tests/postgres.sh: $*" >&2
  exit 1
}

say() {
  echo "tests/postgres.sh: $*" >&2
}

usage() {
  echo "usage: tests/postgres.sh start DIR | stop DIR" >&2
  exit 2
}

# The newest /usr/lib/postgresql/*/bin holding initdb, pg_ctl and postgres; empty if none.
find_bindir() {
  local dir
  while read -r dir; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
      echo "$dir"
      return
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
}

# Installs Debian's `postgresql` package without creating or starting its default cluster
# service: a policy-rc.d that says "no" is put in place for the install if there is none, so
# nothing but our own cluster is left running.
install_postgresql() {
  if [[ $EUID -ne 0 ]]; then
    die "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql/*/bin; install them with \`sudo apt-get install postgresql\` (as root, this script installs them itself)"
  fi
  command -v apt-get >/dev/null || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin, and there is no apt-get to install them with (Debian's package: postgresql)"
  say "installing PostgreSQL from Debian's packages (apt-get install postgresql)"
  local policy=/usr/sbin/policy-rc.d placed=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# tests/postgres.sh: no service starts during its install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    placed=1
  fi
  local status=0
  {
    apt_install || {
      say "apt-get install failed; updating the package lists (apt-get update) and trying again"
      apt-get update -q >&2 && apt_install
    }
  } || status=$?
  if [[ -n $placed ]]; then
    rm -f "$policy"
  fi
  [[ $status -eq 0 ]] || die "apt-get install -y --no-install-recommends postgresql failed (exit $status); see the apt-get output above"
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
}

# The user the cluster runs as: the caller, or `postgres` when the caller is root (created as
# a system user if the package did not).
server_user() {
  if [[ $EUID -ne 0 ]]; then
    id -un
    return
  fi
  if ! id -u postgres >/dev/null 2>&1; then
    say "creating the system user postgres"
    useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
      --shell /usr/sbin/nologin postgres >&2 || die "cannot create the system user postgres (useradd failed)"
  fi
  echo postgres
}

# Runs a command as USER (directly when that is the caller).
as_user() {
  local user=$1
  shift
  if [[ $user == "$(id -un)" ]]; then
    "$@"
  else
    runuser -u "$user" -- "$@"
  fi
}

# A throwaway CA (DIR/ca.pem, its key DIR/tls/ca.key) and a server certificate for 127.0.0.1
# and localhost signed by it (DIR/tls/server.{crt,key}), valid for two days.
make_certificates() {
  local dir=$1 tls=$1/tls
  if ! command -v openssl >/dev/null; then
    [[ $EUID -eq 0 ]] || die "openssl not found; install it (\`sudo apt-get install openssl\`)"
    say "installing openssl from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssl >&2 ||
      die "apt-get install openssl failed"
  fi
  mkdir -p "$tls"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=riposte test CA" -keyout "$tls/ca.key" -out "$dir/ca.pem" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
      openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$tls/server.key" -out "$tls/server.csr" &&
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext" &&
      openssl x509 -req -in "$tls/server.csr" -CA "$dir/ca.pem" -CAkey "$tls/ca.key" \
        -CAcreateserial -CAserial "$tls/ca.srl" -days 2 -extfile "$tls/server.ext" -out "$tls/server.crt"
  } >/dev/null 2>"$tls/openssl.log" || die "making the test certificates failed (openssl); its output is in $tls/openssl.log"
  chmod 644 "$dir/ca.pem"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' && return
  fi
  local port tries
  for tries in $(seq 50); do
    port=$((20000 + RANDOM % 40000))
    if ! ss -Htln "sport = :$port" | grep -q .; then
      echo "$port"
      return
    fi
  done
  die "found no free TCP port on 127.0.0.1 (neither python3 nor ss found one)"
}

start() {
  local dir=$1
  mkdir -p "$dir" || die "cannot create $dir"
  dir=$(cd "$dir" && pwd)
  if [[ -e $dir/$MARKER ]]; then
    die "$dir already holds a cluster made by this script; stop it first: tests/postgres.sh stop $dir"
  fi
  if [[ -n $(ls -A "$dir") ]]; then
    die "$dir is not empty; give an empty or new directory"
  fi
  case $dir in
    *[\'\\[:space:]]*) die "$dir has a quote, a backslash or white space in its path; give another directory" ;;
  esac
  # A unix socket path holds at most 107 bytes: DIR/.s.PGSQL.PORT.
  if ((${#dir} + 18 > 107)); then
    die "$dir is too long for a unix socket path (at most 89 characters); give a shorter directory"
  fi

  local bindir
  bindir=$(find_bindir)
  if [[ -z $bindir ]]; then
    install_postgresql
    bindir=$(find_bindir)
    [[ -n $bindir ]] || die "the postgresql package is installed but no /usr/lib/postgresql/*/bin holds initdb, pg_ctl and postgres"
  fi

  local user
  user=$(server_user)
  chmod 700 "$dir"
  if [[ $user != "$(id -un)" ]]; then
    chown "$user:" "$dir" || die "cannot hand $dir to the user $user (chown failed)"
    as_user "$user" test -w "$dir" ||
      die "the user $user cannot write in $dir (a parent directory shuts it out); give a directory under /tmp"
  fi
  # The marker names the binaries, so `stop` uses the same version.
  echo "bindir=$bindir" >"$dir/$MARKER"

  local data=$dir/data log=$dir/log
  as_user "$user" touch "$log"
  as_user "$user" "$bindir/initdb" --pgdata="$data" --username=postgres --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C --no-instructions >>"$log" 2>&1 ||
    die "initdb failed in $data (as $user); its output is in $log:$(echo; tail -n 20 "$log")"

  # Local socket: only whoever can enter DIR. TCP: 127.0.0.1, over TLS, with a password.
  as_user "$user" tee "$data/pg_hba.conf" >/dev/null <<'EOF'
# TYPE   DATABASE  USER  ADDRESS       METHOD
local    all       all                 trust
hostssl  all       all   127.0.0.1/32  scram-sha-256
EOF
  make_certificates "$dir"
  install -o "$user" -m 600 "$dir/tls/server.key" "$data/server.key"
  install -o "$user" -m 644 "$dir/tls/server.crt" "$data/server.crt"

  local port password url attempt started=
  password=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
  for attempt in 1 2 3; do
    port=$(free_port)
    as_user "$user" tee "$data/postgresql.auto.conf" >/dev/null <<EOF
# Written by tests/postgres.sh.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
    if as_user "$user" "$bindir/pg_ctl" --pgdata="$data" --log="$log" --wait --timeout=60 start >/dev/null; then
      started=1
      break
    fi
    # Another process may have taken the port between the check and the start.
    grep -q 'could not bind' "$log" || break
    say "port $port was taken meanwhile; trying another"
  done
  [[ -n $started ]] || die "the PostgreSQL server did not start (pg_ctl start, as $user); the end of $log:$(echo; tail -n 20 "$log")"

  # The password goes through stdin, not the command line.
  local sql="SET password_encryption = 'scram-sha-256';
CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$password';"
  if ! as_user "$user" "$bindir/psql" --no-psqlrc --quiet --host="$dir" --port="$port" \
    --username=postgres --dbname=postgres --set=ON_ERROR_STOP=1 >/dev/null 2>>"$log" <<<"$sql"; then
    die "creating the role $ROLE failed (psql on the socket in $dir); the end of $log:$(echo; tail -n 20 "$log")"
  fi

  url="postgres://$ROLE:$password@127.0.0.1:$port/postgres?sslmode=require"
  (umask 077 && echo "$url" >"$dir/url")
  echo "$url"
}

stop() {
  local dir=$1
  [[ -e $dir ]] || return 0
  [[ -d $dir ]] || die "$dir is not a directory"
  dir=$(cd "$dir" && pwd)
  if [[ ! -e $dir/$MARKER ]]; then
    [[ -z $(ls -A "$dir") ]] || die "$dir was not made by \`tests/postgres.sh start\` (no $MARKER file in it); not touching it"
    rmdir "$dir"
    return 0
  fi
  local data=$dir/data bindir
  bindir=$(sed -n 's/^bindir=//p' "$dir/$MARKER")
  if [[ -e $data/postmaster.pid ]]; then
    [[ -x $bindir/pg_ctl ]] || die "$bindir/pg_ctl is gone; cannot stop the server of $data (its pid is the first line of $data/postmaster.pid)"
    local user
    user=$(stat -c %U "$data")
    if ! as_user "$user" "$bindir/pg_ctl" --pgdata="$data" --mode=fast --wait --timeout=60 stop >/dev/null 2>&1; then
      # Not running (a stale pid file) is fine; a server still up after that is not.
      if as_user "$user" "$bindir/pg_ctl" --pgdata="$data" status >/dev/null 2>&1; then
        say "pg_ctl stop -m fast did not stop the server of $data; stopping it with -m immediate"
        as_user "$user" "$bindir/pg_ctl" --pgdata="$data" --mode=immediate --wait --timeout=60 stop >/dev/null ||
          die "cannot stop the server of $data (pg_ctl stop -m immediate failed); its log: $dir/log"
      fi
    fi
  fi
  rm -rf "$dir" || die "cannot remove $dir"
}

[[ $# -eq 2 && -n $2 ]] || usage
case $1 in
  start) start "$2" ;;
  stop) stop "$2" ;;
  *) usage ;;
esac
