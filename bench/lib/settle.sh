# shellcheck shell=bash
# settle: writes out what earlier steps left dirty (sync), then waits until
# the machine's I/O is quiet again: the kernel's I/O pressure (PSI, "some"
# avg10 in /proc/pressure/io) below SETTLE_PSI percent (default 2), at most
# SETTLE_MAX seconds (default 60). On a VM the host may still be writing
# back the guest's last gigabytes after `sync` returns; a timed command that
# starts then is slowed by I/O that is not its own. Without PSI it only syncs.
settle() {
  sync
  local psi=/proc/pressure/io limit="${SETTLE_PSI:-2}" max="${SETTLE_MAX:-60}" waited=0 now
  [[ -r "$psi" ]] || return 0
  while ((waited < max)); do
    now="$(awk '/^some/ { sub("avg10=", "", $2); print $2 }' "$psi")"
    awk -v n="$now" -v l="$limit" 'BEGIN { exit !(n < l) }' && return 0
    sleep 1
    waited=$((waited + 1))
  done
  echo "settle: I/O pressure still ${now}% after ${max} s; timing anyway" >&2
}
