#!/usr/bin/env bash
# Usage: start-dovecot.sh <workdir> <port> <user> <password>
# A throw-away Dovecot IMAP server on 127.0.0.1:<port> for the tests (plain IMAP on loopback),
# Maildir under <workdir>/mail, its own base_dir and config; no systemd. Dovecot 2.3 syntax.
# Writes <workdir>/dovecot.pid; stop with: kill -TERM "$(cat <workdir>/dovecot.pid)".
set -euo pipefail
D=$(realpath -m "${1:?workdir}")
PORT=${2:?port}
USER_NAME=${3:?user}
PASSWORD=${4:?password}
mkdir -p "$D/run" "$D/state" "$D/mail"
chmod 755 "$D"   # dovecot's auth process must be able to enter it

if [ "$(id -u)" = 0 ]; then
  # Dovecot refuses mail access as root: store mail as nobody.
  MAIL_USER=nobody; MAIL_GROUP=$(id -gn nobody)
  chown -R "$MAIL_USER:$MAIL_GROUP" "$D/mail"
  PRIV=""
else
  MAIL_USER=$(id -un); MAIL_GROUP=$(id -gn)
  PRIV="default_login_user = $MAIL_USER
default_internal_user = $MAIL_USER
default_internal_group = $MAIL_GROUP
service anvil {
  chroot =
}
service imap-login {
  chroot =
}"
fi

printf '%s:{PLAIN}%s::::\n' "$USER_NAME" "$PASSWORD" > "$D/users"

cat > "$D/dovecot.conf" <<CONF
protocols = imap
listen = 127.0.0.1
base_dir = $D/run
state_dir = $D/state
log_path = $D/dovecot.log
info_log_path = $D/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir
$PRIV
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $D/users
}
userdb {
  driver = static
  args = uid=$MAIL_USER gid=$MAIL_GROUP home=$D/mail/%u
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Done {
    auto = create
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
CONF

dovecot -F -c "$D/dovecot.conf" >>"$D/dovecot.stdout" 2>&1 &
echo $! > "$D/dovecot.pid"
for _ in $(seq 1 100); do
  kill -0 "$(cat "$D/dovecot.pid")" 2>/dev/null || break
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "dovecot up on 127.0.0.1:$PORT pid=$(cat "$D/dovecot.pid")"
    exit 0
  fi
  sleep 0.1
done
echo "dovecot did not come up" >&2
cat "$D/dovecot.log" "$D/dovecot.stdout" >&2 2>/dev/null || true
exit 1
