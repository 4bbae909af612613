import multiprocessing
import os
import time

from lmzoo.cache import build_once, is_ready


def slow_builder(folder, started):
    def build(tmp):
        started.set()
        time.sleep(2)
        with open(os.path.join(tmp, "blocks.txt"), "w") as f:
            f.write("built by the other run")
    build_once(folder, build, "a slow build")


def test_a_second_run_waits_for_the_first_and_reuses_its_build(tmp_path):
    folder = str(tmp_path / "tokenized")
    started = multiprocessing.Event()
    other = multiprocessing.Process(target=slow_builder, args=(folder, started))
    other.start()
    started.wait(30)
    calls = []
    build_once(folder, lambda tmp: calls.append(tmp), "the same build")
    other.join(30)
    assert calls == []  # it waited on the lock, then found the build ready
    assert open(os.path.join(folder, "blocks.txt")).read() == "built by the other run"


def test_a_killed_build_leaves_nothing_that_looks_ready(tmp_path):
    folder = str(tmp_path / "tokenized")

    def die(tmp):
        with open(os.path.join(tmp, "part.txt"), "w") as f:
            f.write("half")
        os._exit(9)  # SIGKILL-like: no cleanup runs

    proc = multiprocessing.Process(target=build_once, args=(folder, die, "doomed"))
    proc.start()
    proc.join(30)
    assert proc.exitcode == 9 and not is_ready(folder) and not os.path.exists(folder)
    build_once(folder, lambda tmp: open(os.path.join(tmp, "ok.txt"), "w").close(), "retry")
    assert is_ready(folder) and sorted(os.listdir(tmp_path)) == ["tokenized", "tokenized.lock"]  # stale tmp gone


def test_non_main_ranks_poll_for_the_ready_marker(tmp_path, monkeypatch):
    folder = str(tmp_path / "tokenized")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    builder = multiprocessing.Process(target=build_once, args=(folder, lambda tmp: time.sleep(1), "main"))
    builder.start()
    monkeypatch.setenv("LOCAL_RANK", "1")
    start = time.time()
    build_once(folder, lambda tmp: (_ for _ in ()).throw(AssertionError("rank 1 must not build")), "x",
               poll_seconds=0.1)
    builder.join(30)
    assert is_ready(folder) and time.time() - start < 30


def test_a_build_damaged_after_it_was_made_is_built_again_with_a_warning(tmp_path, capsys):
    folder = str(tmp_path / "tokenized")
    builds = []

    def build(tmp):
        builds.append(tmp)
        os.makedirs(os.path.join(tmp, "data"))
        with open(os.path.join(tmp, "data", "train.arrow"), "wb") as f:
            f.write(b"x" * 1000)

    build_once(folder, build, "blocks")
    build_once(folder, build, "blocks")
    assert len(builds) == 1  # sound: reused
    with open(os.path.join(folder, "data", "train.arrow"), "r+b") as f:
        f.truncate(400)  # a copy cut short
    capsys.readouterr()
    build_once(folder, build, "blocks")
    assert len(builds) == 2
    assert (f"[lmzoo] warning: {folder} is damaged (data/train.arrow has 400 bytes, 1,000 when it was built); "
            "building it again") in capsys.readouterr().err
    assert os.path.getsize(os.path.join(folder, "data", "train.arrow")) == 1000
