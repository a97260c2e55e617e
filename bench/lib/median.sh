# shellcheck shell=bash
# median VALUE...: the middle value, or the mean of the two middle ones when
# there is an even number of them (the lower middle alone would flatter a
# side whose rounds spread).
median() {
  printf '%s\n' "$@" | sort -g |
    awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'
}
