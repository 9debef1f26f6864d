#!/usr/bin/env bash
# Post the review comment, or edit the one this action posted before (found by its first line,
# the marker review.sh writes), so that a pull request carries one genbac comment however often
# it is pushed. Environment: GH_TOKEN, REPO (owner/name), PR (its number), COMMENT_FILE.
set -euo pipefail

marker='<!-- genbac-review -->'
post() {
  local id
  id=$(gh api "repos/$REPO/issues/$PR/comments" --paginate \
    --jq ".[] | select(.body | startswith(\"$marker\")) | .id" | head -n 1)
  if [ -n "$id" ]; then
    gh api --method PATCH "repos/$REPO/issues/comments/$id" -F "body=@$COMMENT_FILE" >/dev/null
    echo "updated the review comment ($id)"
  else
    gh pr comment "$PR" --repo "$REPO" --body-file "$COMMENT_FILE"
  fi
}
# A read-only token (a pull request from a fork) cannot comment: say so, and leave the verdict to
# the check, which is what the pull request is judged by.
if ! post; then
  echo "::warning::could not post the genbac review comment (is the token read-only, as on a" \
    "pull request from a fork?); the comment is in the log above"
fi
