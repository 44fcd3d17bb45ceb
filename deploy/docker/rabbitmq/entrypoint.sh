#!/bin/sh
# The official image's variables, written where RabbitMQ reads them, then the server.
set -eu
conf=/etc/rabbitmq/conf.d/10-defaults.conf
: > "$conf"
[ -z "${RABBITMQ_DEFAULT_USER:-}" ] || echo "default_user = $RABBITMQ_DEFAULT_USER" >> "$conf"
[ -z "${RABBITMQ_DEFAULT_PASS:-}" ] || echo "default_pass = $RABBITMQ_DEFAULT_PASS" >> "$conf"
[ -z "${RABBITMQ_DEFAULT_VHOST:-}" ] || echo "default_vhost = $RABBITMQ_DEFAULT_VHOST" >> "$conf"
[ -z "${RABBITMQ_NODE_PORT:-}" ] || echo "listeners.tcp.default = $RABBITMQ_NODE_PORT" >> "$conf"
if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
  cookie=$HOME/.erlang.cookie
  rm -f "$cookie"
  printf '%s' "$RABBITMQ_ERLANG_COOKIE" > "$cookie"
  chmod 400 "$cookie"
  unset RABBITMQ_ERLANG_COOKIE
fi
exec "$@"
