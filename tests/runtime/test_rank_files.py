"""Files the ranks share with the executor: the events files as the executor reads them (a file
per rank, so appends from several nodes never interleave; whole lines only, in order; a damaged
line becomes a warning in the log instead of stopping the run), and the checkpoint directory after
a kill mid-save."""

from genbac.runtime.distributed import EventLog


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
