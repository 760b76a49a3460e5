#!/bin/sh
# The zone goes into /var/lib/bind (a pod's emptyDir) unless an earlier start left it there
# with its updates; then named runs in the foreground, logging to stderr.
set -eu
[ -e /var/lib/bind/hakeeper.test.zone ] || cp /usr/share/hakeeper/hakeeper.test.zone /var/lib/bind/
named-checkconf /etc/bind/named.conf
exec named -g -c /etc/bind/named.conf "$@"
