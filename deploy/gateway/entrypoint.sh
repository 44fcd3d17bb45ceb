#!/bin/sh
# The gateway container's entry point: fill the template from the environment and run nginx.
# envsubst gets the list of our placeholders so nginx's own $variables are left alone; the
# Python renderer (deploy/local/gateway_config.py) fills the same names for `make up`.
set -eu
: "${RUN_DIR:=/tmp/gateway}"
: "${PUBLIC_READ_CACHE:=public_reads}"
export RUN_DIR PUBLIC_READ_CACHE
mkdir -p "$RUN_DIR"
PLACEHOLDERS='${GATEWAY_LISTEN} ${RUN_DIR} ${ERROR_LOG} ${ACCESS_LOG} ${MEDIA_ROOT} ${AUTH_UPSTREAM} ${RECIPES_UPSTREAM} ${NOTIFIER_UPSTREAM} ${UPLOAD_LIMIT} ${AUTH_TOKEN_RATE} ${AUTH_TOKEN_BURST} ${PUBLIC_READ_CACHE}'
envsubst "$PLACEHOLDERS" < /etc/platform-gateway/nginx.conf.template > "$RUN_DIR/nginx.conf"
exec nginx -p "$RUN_DIR" -e "$ERROR_LOG" -c "$RUN_DIR/nginx.conf"
