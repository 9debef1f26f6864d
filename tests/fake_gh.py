#!/usr/bin/env python3
"""A stand-in for GitHub's `gh` CLI with the calls action/post.sh makes, against a JSON file of
one pull request's comments ($FAKE_GH_STATE) instead of api.github.com.

It behaves as the real `gh` does for those calls: no GH_TOKEN is the real error message and exit
status 4; `gh api` lists comments as the REST API returns them (objects with `id` and `body`)
and applies the one `--jq` filter post.sh uses; PATCH of an unknown comment is HTTP 404; with
FAKE_GH_READONLY set every write is HTTP 403, as for a pull request from a fork.
"""

import json
import os
import re
import sys


def fail(message: str, code: int = 1) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def main(argv: list[str]) -> None:
    if not os.environ.get("GH_TOKEN"):
        fail("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment "
             "variable. Example:\n  env:\n    GH_TOKEN: ${{ github.token }}", 4)
    path = os.environ["FAKE_GH_STATE"]
    state = json.load(open(path)) if os.path.exists(path) else {"comments": [], "next_id": 100}
    readonly = bool(os.environ.get("FAKE_GH_READONLY"))

    def save() -> None:
        with open(path, "w") as f:
            json.dump(state, f)

    if argv[:1] == ["api"]:
        args = argv[1:]
        method = "GET"
        if "--method" in args:
            method = args[args.index("--method") + 1]
        endpoint = next(a for a in args if a.startswith("repos/"))
        if method == "GET" and re.fullmatch(r"repos/[^/]+/[^/]+/issues/\d+/comments", endpoint):
            jq = args[args.index("--jq") + 1]
            m = re.fullmatch(r'\.\[\] \| select\(\.body \| startswith\("(.*)"\)\) \| \.id', jq)
            if m is None:
                fail(f"fake gh: a --jq filter it does not know: {jq}")
            for comment in state["comments"]:
                if comment["body"].startswith(m.group(1)):
                    print(comment["id"])
            return
        m = re.fullmatch(r"repos/[^/]+/[^/]+/issues/comments/(\d+)", endpoint)
        if method == "PATCH" and m:
            if readonly:
                fail("gh: Resource not accessible by integration (HTTP 403)")
            body_arg = args[args.index("-F") + 1]
            assert body_arg.startswith("body=@"), body_arg
            comment = next((c for c in state["comments"] if c["id"] == int(m.group(1))), None)
            if comment is None:
                fail("gh: Not Found (HTTP 404)")
            comment["body"] = open(body_arg[len("body=@"):]).read()
            comment["edits"] = comment.get("edits", 0) + 1
            save()
            print(json.dumps(comment))
            return
        fail(f"fake gh: an api call it does not know: {argv}")
    if argv[:2] == ["pr", "comment"]:
        if readonly:
            fail("GraphQL: Resource not accessible by integration (addComment)")
        body = open(argv[argv.index("--body-file") + 1]).read()
        state["comments"].append({"id": state["next_id"], "body": body, "pr": int(argv[2])})
        state["next_id"] += 1
        save()
        print(f"https://github.com/o/r/pull/{argv[2]}#issuecomment-{state['next_id'] - 1}")
        return
    fail(f"fake gh: a command it does not know: {argv}")


if __name__ == "__main__":
    main(sys.argv[1:])
