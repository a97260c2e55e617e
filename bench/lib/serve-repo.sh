# shellcheck shell=bash
# shellcheck disable=SC2154  # work comes from the script that sources this
# serve_repo DIR NAME: commits everything in the work tree DIR and publishes
# it as the bare repository "$work/srv/NAME.git", kept as a forge keeps one:
# packed, with a bitmap (a server sending loose objects spends seconds
# compressing them for every fetch), and serving partial fetches as forges do
# (FILTER=0: git's default, refused).
serve_repo() { # dir name
  git -C "$1" add -A && git -C "$1" commit -q -m "$2"
  git clone -q --bare "$1" "$work/srv/$2.git"
  git -C "$work/srv/$2.git" repack -adq
  if [[ "${FILTER:-1}" == 1 ]]; then git -C "$work/srv/$2.git" config uploadpack.allowFilter true; fi
}
