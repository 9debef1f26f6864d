"""Files the ranks share with the executor: the events files as the executor reads them (a file
per rank, so appends from several nodes never interleave; whole lines only, in order; a damaged
line becomes a warning in the log instead of stopping the run), and the checkpoint directory after
a kill mid-save."""

import os
import signal
import subprocess
import sys

from genbac.runtime.distributed import EXECUTOR_PID, EventLog, run_torchrun


def test_each_rank_writes_its_own_file_read_whole_lines_in_rank_order(tmp_path):
    reader = EventLog(tmp_path / "phase-1.events.jsonl")
    assert reader.read_new() == []  # no file yet
    rank0, rank1 = (EventLog(reader.path, rank=r) for r in (0, 1))
    rank1.write(error="rank 1: no space left", rank=1)
    rank0.write(step=1, metrics={"loss": 2.5})
    assert [f.name for f in reader.files()] == ["phase-1.events.rank-0.jsonl",
                                                "phase-1.events.rank-1.jsonl"]
    (tmp_path / "phase-10.events.rank-0.jsonl").write_text('{"step": 99}\n')  # another phase
    (tmp_path / "phase-1.events.rank-x.jsonl").write_text('{"step": 98}\n')  # not a rank's
    with open(rank0.file(0), "ab") as f:
        f.write(b'{"step": 2, "metr\x00\x00"}\n')  # a damaged line
        f.write(b"[1, 2]\n")  # JSON, but not an event
        f.write(b'{"log": "half a li')  # still being written
    events = reader.read_new()
    assert events[0] == {"step": 1, "metrics": {"loss": 2.5}}
    assert [e["log"] for e in events[1:3]] == [
        f"genbac: warning: skipped an unreadable line in {rank0.file(0)} (21 bytes)",
        f"genbac: warning: skipped an unreadable line in {rank0.file(0)} (6 bytes)"]
    assert events[3:] == [{"error": "rank 1: no space left", "rank": 1}]
    with open(rank0.file(0), "ab") as f:
        f.write(b'ne"}\n')
    rank1.write(log="rank 1 again")
    assert reader.read_new() == [{"log": "half a line"}, {"log": "rank 1 again"}]
    assert reader.read_new() == []
    reader.clear()
    assert reader.files() == [] and reader.read_new() == []
    assert (tmp_path / "phase-10.events.rank-0.jsonl").exists()


def test_a_killed_checkpoint_write_leaves_nothing_after_the_next_save(tmp_path):
    """SIGKILL skips atomic.directory's cleanup: the next save removes the unfinished directory,
    and puts back a checkpoint caught between the two renames that replace one."""
    from genbac import atomic

    ckpts = tmp_path / "checkpoints"
    (ckpts / ".step_00000020.k1ll3d.tmp").mkdir(parents=True)
    (ckpts / ".step_00000020.k1ll3d.tmp" / "__0_0.distcp").write_bytes(b"\0" * 1024)
    (ckpts / ".step_00000010.r3nam3.old" / "previous").mkdir(parents=True)
    (ckpts / ".step_00000010.r3nam3.old" / "previous" / "state.json").write_text("{}")
    (ckpts / "step_00000005").mkdir()
    (ckpts / ".unrelated.tmp").mkdir()
    removed = atomic.clean_leftovers(ckpts, "step_")
    assert sorted(p.name for p in removed) == [".step_00000010.r3nam3.old",
                                               ".step_00000020.k1ll3d.tmp"]
    assert sorted(p.name for p in ckpts.iterdir()) == [".unrelated.tmp", "step_00000005",
                                                       "step_00000010"]
    assert (ckpts / "step_00000010" / "state.json").read_text() == "{}"


def report(rank: int, code: str, when: str) -> str:
    return (f"Root Cause (first observed failure):\n[0]:\n  time      : {when}\n"
            f"  host      : node{rank}\n  rank      : {rank} (local_rank: 0)\n"
            f"  exitcode  : {code}\n  error_file: <N/A>\n")


def test_the_failure_named_is_the_rank_that_caused_it_whichever_agent_reported_last():
    """Two nodes' agents each report a Root Cause: the rank killed by a signal is named, not the
    rank that exited 1 because its peer vanished, in whichever order the reports were written."""
    from genbac.runtime.distributed import failure_summary

    killed = report(1, "-9 (pid: 4242)  (SIGKILL)", "2026-12-03_09:50:06")
    follower = report(0, "1 (pid: 4241) ", "2026-12-03_09:50:05")
    expected = "rank 1 (pid 4242) was killed by SIGKILL; torchrun stopped the other ranks"
    assert failure_summary(killed + follower) == expected
    assert failure_summary(follower + killed) == expected
    # an error on one rank and the launcher's SIGTERM of the other: the error, reported first
    stopped = report(1, "-15 (pid: 4242)  (SIGTERM)", "2026-12-03_09:50:05")
    assert failure_summary(stopped + follower).startswith("rank 0 (pid 4241) exited with status 1")
    # NCCL: a peer's watchdog aborts it (SIGABRT) after the rank that failed exited 1
    aborted = report(0, "-6 (pid: 4241)  (SIGABRT)", "2026-12-03_10:00:05")
    failed = report(9, "1 (pid: 4250) ", "2026-12-03_10:00:01")
    assert failure_summary(aborted + failed).startswith("rank 9 (pid 4250) exited with status 1")
    assert failure_summary("no report") == "the training processes stopped"


def test_a_process_whose_parent_is_already_gone_stops_at_once():
    """The agent (and each worker) asks for a signal when its parent dies; a parent that died
    before the request is seen from the pid it was given: the process stops then, instead of
    training as an orphan beside the rerun."""
    code = ("import os, signal, sys\n"
            "from genbac.runtime.lifetime import die_with_parent\n"
            "die_with_parent(signal.SIGTERM, int(sys.argv[1]))\n"
            "print('still here')\n")
    alive = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True,
                           text=True, timeout=60)
    assert (alive.returncode, alive.stdout) == (0, "still here\n")
    # a pid that is not its parent's: as if the executor had died and the agent been adopted
    orphan = subprocess.run([sys.executable, "-c", code, str(os.getpid() + 1_000_000)],
                            capture_output=True, text=True, timeout=60)
    assert orphan.returncode == -signal.SIGTERM and orphan.stdout == ""


def test_only_agents_the_executor_starts_itself_check_it_is_their_parent(tmp_path):
    """srun hands its environment to agents whose parent is slurmstepd: they must not get the
    executor's pid, or every one of them would stop itself at once."""
    seen = {}
    for direct in (True, False):
        out = tmp_path / f"env-{direct}.txt"
        command = [sys.executable, "-c",
                   f"import os; open({str(out)!r}, 'w').write(os.environ.get({EXECUTOR_PID!r}, '-'))"]
        status = run_torchrun([command], 1, tmp_path / "log", EventLog(tmp_path / "ev.jsonl"),
                              lambda event: None, poll_s=0.01, direct=direct)
        assert status == 0
        seen[direct] = out.read_text()
    assert seen == {True: str(os.getpid()), False: "-"}
