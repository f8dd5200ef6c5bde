#!/bin/bash
# git_workflow: git init, 25 commits, a branch and a merge, log, blame,
# gc.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-git-XXXXXX)
trap 'rm -rf "$d"' EXIT
cd "$d"
export GIT_AUTHOR_NAME=dev GIT_AUTHOR_EMAIL=dev@example.com GIT_COMMITTER_NAME=dev GIT_COMMITTER_EMAIL=dev@example.com
git init -q -b main .
for i in $(seq 1 25); do
	seq 1 $((i * 20)) > "f$((i % 5)).txt"
	git add -A
	git commit -q -m "step $i"
done
git checkout -q -b feature
echo feature >> f1.txt
git commit -q -am feature
git checkout -q main
git merge -q --no-edit feature
git log --oneline | wc -l
git blame f1.txt | tail -1 >/dev/null
git gc -q
