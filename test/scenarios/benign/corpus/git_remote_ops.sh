#!/bin/bash
# git: a bare remote, push, clone, fetch, rebase, bisect run, worktree, fsck, gc --aggressive
set -eu
d=$(mktemp -d /tmp/vigil-git-XXXXXX); trap 'rm -rf "$d"' EXIT; cd "$d"
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@e GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@e HOME="$d"
git init -q --bare -b main remote.git; git init -q -b main w; cd w
for i in $(seq 1 15); do echo "v$i" > f; seq $i 300 > g$((i%3)); git add -A; git commit -qm "c$i"; done
git remote add origin ../remote.git; git push -q origin main 2>/dev/null
cd ..; git clone -q remote.git c2; cd c2; echo x >> f; git commit -qam x; git push -q 2>/dev/null
cd ../w; git fetch -q; git rebase -q origin/main 2>/dev/null || true
git bisect start -q HEAD HEAD~10 >/dev/null 2>&1; git bisect run sh -c 'grep -qv v12 f' >/dev/null 2>&1 || true; git bisect reset -q 2>/dev/null || true
git worktree add -q ../wt HEAD~3 2>/dev/null; git worktree remove ../wt; git fsck >/dev/null 2>&1; git gc -q --aggressive; git stash list >/dev/null
git log --graph --oneline | head -3 >/dev/null; git archive HEAD | tar -t >/dev/null; git format-patch -q -3 -o ../patches >/dev/null
