#!/bin/bash
# git_clone: clone of a local repository with history, log --stat, diff,
# archive.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-gitclone-XXXXXX)
trap 'rm -rf "$d"' EXIT
git clone -q "file://$FIX/git/origin" "$d/work"
cd "$d/work"
git log --stat | wc -l
git diff HEAD~10 --stat | tail -1
git archive --format=tar HEAD | tar -t | wc -l
