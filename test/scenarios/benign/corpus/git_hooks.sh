#!/bin/bash
# git-hooks: a repository whose hooks a setup script writes (as husky or
# pre-commit install them): pre-commit, commit-msg and post-commit on 10
# commits, pre-push, and a bare remote whose post-receive hook runs on
# each push.
set -euo pipefail
d=$(mktemp -d /tmp/vigil-hooks-XXXXXX)
trap 'rm -rf "$d"' EXIT
cd "$d"
git init -q --bare remote.git
printf '#!/bin/sh\nwhile read old new ref; do echo "$ref $new" >> "%s/received.log"; done\n' "$d" > remote.git/hooks/post-receive
git init -q work
cd work
git config user.email ci@example.com
git config user.name ci
printf '#!/bin/sh\nfor f in $(git diff --cached --name-only --diff-filter=AM); do sh -n "$f" || exit 1; done\n' > .git/hooks/pre-commit
printf '#!/bin/sh\ngrep -qE "^(feat|fix|chore): " "$1" || { echo "bad message" >&2; exit 1; }\n' > .git/hooks/commit-msg
printf '#!/bin/sh\ngit log -1 --format=%%h >> ../commits.log\n' > .git/hooks/post-commit
printf '#!/bin/sh\nwhile read lref lsha rref rsha; do test -n "$lsha" || exit 1; done\n' > .git/hooks/pre-push
chmod +x .git/hooks/pre-commit .git/hooks/commit-msg .git/hooks/post-commit .git/hooks/pre-push ../remote.git/hooks/post-receive
git remote add origin ../remote.git
for i in $(seq 1 10); do
	printf '#!/bin/sh\necho step %d\n' "$i" > "s$i.sh"
	git add "s$i.sh"
	git commit -qm "feat: step $i"
	if [ $((i % 5)) = 0 ]; then git push -q origin HEAD:main; fi
done
! git commit -q --allow-empty -m "no prefix" 2>/dev/null
wc -l < ../commits.log
wc -l < ../received.log
