#!/bin/sh
# pipeline: a shell pipeline over generated text: awk, sort, uniq, sed, head.
set -e
seq 1 40000 | awk '{ print $1 % 97, $1 }' | sort -n -k1,1 | awk '{ c[$1]++ } END { for (k in c) print k, c[k] }' | sort -k2,2nr | sed 's/ /=/' | head -5 > /dev/null
seq 1 20000 | tr '0-9' 'a-j' | sort | uniq -c | sort -rn | head -3 > /dev/null
for w in alpha beta gamma delta; do echo "$w $(echo $w | wc -c)"; done | sort > /dev/null
