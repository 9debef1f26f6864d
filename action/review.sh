#!/usr/bin/env bash
# The review comment of genbac's GitHub Action (action.yml): for every .genba file a pull request
# adds, changes, renames or deletes, `genbac explain` of the new version and `genbac diff` against
# where the pull request branched off, in Markdown, written to $COMMENT_FILE.
#
# Environment: BASE_REF (the base branch, e.g. origin/main), COMMENT_FILE (where to write), and
# optionally FMT_DIFF (a file holding `genbac fmt --check --diff` output, shown when not empty).
# Untrusted names (branches, paths) reach this script only through the environment and git.
set -euo pipefail

base=$(git rev-parse --short=12 "$(git merge-base "$BASE_REF" HEAD)")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fence='```'

review() { # review STATUS OLD_PATH NEW_PATH
  local status=$1 old=$2 new=$3 rc=0
  echo "## \`$new\`"
  echo
  if [ "$status" = D ]; then
    echo "Removed in this pull request."
    echo
    return
  fi
  if [ "$status" = A ]; then echo "A new experiment."; echo; fi
  if [ "$status" = R ] && [ "$old" != "$new" ]; then echo "Renamed from \`$old\`."; echo; fi
  genbac explain --format markdown "$new" >"$scratch/explain.md" 2>"$scratch/explain.err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    # the errors once (they are also the check's annotations); no diff of a spec that has errors
    echo "**The spec has errors** (\`genbac check\` annotates them in the files):"
    echo; echo "$fence"; cat "$scratch/explain.err"; echo "$fence"; echo
    return
  fi
  if [ "$status" != A ]; then
    rc=0
    genbac diff --format markdown "$base:$old" "$new" \
      >"$scratch/diff.md" 2>"$scratch/diff.err" || rc=$?
    if [ "$rc" -le 1 ]; then # 0 the same experiment, 1 different
      cat "$scratch/diff.md"
    else
      echo "genbac diff could not compare with the old version:"
      echo; echo "$fence"; cat "$scratch/diff.err"; echo "$fence"
    fi
    echo
  fi
  echo "<details><summary>genbac explain: the new version in full</summary>"
  echo
  sed 's/^#/##/' "$scratch/explain.md" # one level below this file's heading
  echo
  echo "</details>"
  echo
}

{
  echo "<!-- genbac-review -->"
  echo "# genbac review"
  echo
  echo "Against \`${BASE_REF}\` at $base. Estimates are estimates, not measurements."
  echo
  if [ -n "${FMT_DIFF:-}" ] && [ -s "$FMT_DIFF" ]; then
    echo "**Not in \`genbac fmt\`'s layout**; \`genbac fmt\` on these files gives:"
    echo
    echo "${fence}diff"; cat "$FMT_DIFF"; echo "$fence"
    echo
  fi
  git -c core.quotePath=false diff --name-status -M --diff-filter=ADMR "$base" HEAD \
    -- '*.genba' >"$scratch/changed"
  if [ ! -s "$scratch/changed" ]; then
    echo "No .genba file changed."
  fi
  while IFS=$'\t' read -r status old new; do
    review "${status:0:1}" "$old" "${new:-$old}"
  done <"$scratch/changed"
} >"$COMMENT_FILE"
cat "$COMMENT_FILE"
