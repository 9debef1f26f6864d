"""Run `genbac ARGS…` and SIGKILL it at its K-th file-system operation (tests/test_compile_kill.py).

KILL_AT=K kills at the K-th operation, just before it happens; KILL_AT=0 kills nothing and prints
how many there were. The operations are found with an audit hook (PEP 578): files opened for
writing, renames, directory creation and removal, file removal, mode changes, genbac's directory
exchange. What happens under $XDG_CACHE_HOME (the parser and template caches) is not counted.
NO_EXCHANGE=1 makes genbac take its two-rename fallback, as on a filesystem without
RENAME_EXCHANGE.
"""

import os
import signal
import sys

EVENTS = ("os.rename", "os.replace", "os.mkdir", "os.rmdir", "os.remove", "os.unlink",
          "os.chmod", "os.symlink", "shutil.rmtree", "tempfile.mkdtemp", "genbac.exchange")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def is_write(event: str, args: tuple) -> bool:
    if event == "open":
        mode, flags = args[1], args[2]
        return bool(isinstance(mode, str) and set(mode) & set("wax+")
                    or isinstance(flags, int) and flags & WRITE_FLAGS)
    return event in EVENTS


def main() -> int:
    kill_at = int(os.environ["KILL_AT"])
    cache = os.environ["XDG_CACHE_HOME"]
    count = 0

    def hook(event, args):
        nonlocal count
        if not is_write(event, args) or str(args[0]).startswith(cache):
            return
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    if os.environ.get("NO_EXCHANGE"):
        import genbac.output

        genbac.output._exchange = lambda a, b: False
    sys.addaudithook(hook)
    from genbac.cli import main as genbac

    code = genbac(sys.argv[1:])
    if kill_at == 0:
        print(count)
    return code


if __name__ == "__main__":
    sys.exit(main())
