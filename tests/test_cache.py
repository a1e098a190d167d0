"""The tuning cache never breaks a forward: unusable locations, symlinked locks, corrupt files,
other environments' entries, concurrent writers."""

import errno
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import time
import warnings

import pytest
import torch
import torch.nn.functional as F

import groupconv
from groupconv import dispatch, formulations, timing, tuning
from groupconv.timing import Timing


@pytest.fixture(autouse=True)
def quick_timer(monkeypatch):
    """Tuning here is about the cache, not the timings: one untimed call each, all equally fast."""

    def interleaved(contenders, settings=timing.FULL, clock=None):
        for run in contenders.values():
            run()
        return {name: Timing(1e-3, 1e-3, 1e-3, 1e-3, 1) for name in contenders}

    monkeypatch.setattr(tuning.timing, "interleaved", interleaved)
    monkeypatch.delenv("GROUPCONV_TUNE", raising=False)


def use_cache(monkeypatch, path) -> None:
    monkeypatch.setenv("GROUPCONV_CACHE", str(path))


def forward_backward_works(tune: bool) -> list[warnings.WarningMessage]:
    """A layer's forward and backward (tuned now, if ``tune``) match PyTorch's; the cache's warnings."""
    layer = groupconv.nn.Conv2d(4, 4, 3, groups=2, padding=1)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if tune:
            groupconv.tune(layer, x.detach(), layout=False)
        for _ in range(2):
            y = layer(x)
            expected = F.conv2d(x, layer.weight, layer.bias, padding=1, groups=2)
            torch.testing.assert_close(y, expected)
            torch.testing.assert_close(torch.autograd.grad(y.sum(), x), torch.autograd.grad(expected.sum(), x))
    return [w for w in caught if "tuning cache" in str(w.message)]


def assert_one_warning(caught, reason: str) -> None:
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert "cannot be used" in str(caught[0].message) and reason in str(caught[0].message)


def fail_for(monkeypatch, path, error: int, writing: bool) -> None:
    """Make opening ``path`` (for writing, or for reading) fail with ``error``, as a permission or a
    read-only file system would even for root, who may read and write anything else."""
    real_open = os.open

    def fake_open(file, flags, *args, **kwargs):
        wants_write = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if str(file).startswith(str(path)) and wants_write == writing:
            raise OSError(error, os.strerror(error), str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


@pytest.mark.parametrize("tune", [False, True])
def test_a_directory_in_place_of_the_cache(tmp_path, monkeypatch, tune):
    (tmp_path / "tune.json").mkdir()
    use_cache(monkeypatch, tmp_path / "tune.json")
    assert_one_warning(forward_backward_works(tune), "not a regular file")
    assert (tmp_path / "tune.json").is_dir()


@pytest.mark.parametrize("tune", [False, True])
def test_an_unreadable_cache(tmp_path, monkeypatch, tune):
    path = tmp_path / "tune.json"
    path.write_text("{}")
    path.chmod(0)
    fail_for(monkeypatch, path, errno.EACCES, writing=False)
    use_cache(monkeypatch, path)
    assert_one_warning(forward_backward_works(tune), "Permission denied")


def test_an_unwritable_location(monkeypatch):
    use_cache(monkeypatch, "/sys/groupconv/tune.json")  # even root may not make a directory there
    assert_one_warning(forward_backward_works(tune=True), "")
    assert tuning.cache().entries  # the choices last as long as the process


def test_a_read_only_file_system(tmp_path, monkeypatch):
    fail_for(monkeypatch, tmp_path, errno.EROFS, writing=True)
    use_cache(monkeypatch, tmp_path / "tune.json")
    assert_one_warning(forward_backward_works(tune=True), "Read-only file system")
    assert not (tmp_path / "tune.json").exists()


@pytest.mark.parametrize("tune", [False, True])
def test_a_path_under_a_regular_file(tmp_path, monkeypatch, tune):
    (tmp_path / "file").write_text("not a directory")
    use_cache(monkeypatch, tmp_path / "file" / "tune.json")
    assert_one_warning(forward_backward_works(tune), "Not a directory")


def test_a_device_file_is_neither_read_nor_replaced(monkeypatch):
    use_cache(monkeypatch, os.devnull)
    assert_one_warning(forward_backward_works(tune=True), "not a regular file")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


@pytest.mark.slow
def test_a_fifo_never_hangs(tmp_path):
    """Run in a subprocess under a timeout: opening a FIFO to read would block until a writer came."""
    fifo = tmp_path / "tune.json"
    os.mkfifo(fifo)
    script = (
        "import warnings, torch, groupconv\n"
        "layer = groupconv.nn.Conv2d(4, 4, 3, groups=2)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    layer(torch.randn(1, 4, 6, 6)).sum().backward()\n"
        "print(sum('cannot be used' in str(w.message) for w in caught))\n"
    )
    environment = {**os.environ, "GROUPCONV_CACHE": str(fifo), "GROUPCONV_TUNE": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_planted_lock_symlink_is_not_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "tune.json.lock").symlink_to(victim)
    use_cache(monkeypatch, tmp_path / "tune.json")
    assert_one_warning(forward_backward_works(tune=True), "symbolic link")
    assert victim.read_text() == "precious" and not (tmp_path / "tune.json").exists()


def test_a_directory_in_place_of_the_lock_is_named(tmp_path, monkeypatch):
    """The cache file is fine; the warning says which path is not ("Is a directory" alone pointed at the cache)."""
    (tmp_path / "tune.json.lock").mkdir()
    use_cache(monkeypatch, tmp_path / "tune.json")
    assert_one_warning(forward_backward_works(tune=True), f"Is a directory: {tmp_path / 'tune.json.lock'}")


def test_two_environments_keep_their_entries(tmp_path, monkeypatch):
    """One file, shared by two virtual environments (torch versions differ): each writes its own section."""
    path = tmp_path / "tune.json"
    use_cache(monkeypatch, path)
    tuning.cache().put("ours", "native")
    other = {**tuning.fingerprint(), "torch": "1.0.0"}
    document = json.loads(path.read_text())
    document["sections"]["other"] = {"fingerprint": other, "entries": {f"theirs {i}": "split" for i in range(100)}}
    path.write_text(json.dumps(document))
    tuning._cache_at.cache_clear()  # a new process
    tuning.cache().put("ours too", "im2col")
    sections = json.loads(path.read_text())["sections"]
    assert sections["other"]["entries"] == {f"theirs {i}": "split" for i in range(100)}
    ours = [s["entries"] for s in sections.values() if s["fingerprint"] == tuning.fingerprint()]
    assert ours == [{"ours": "native", "ours too": "im2col"}]


def test_a_format_1_file_of_another_version_is_kept(tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    old = {"fingerprint": {"format": "1", "cpu": "x", "torch": "2.0"}, "entries": {"k": "native"}}
    path.write_text(json.dumps(old))
    use_cache(monkeypatch, path)
    assert tuning.cache().get("k") is None
    tuning.cache().put("new", "split")
    sections = json.loads(path.read_text())["sections"].values()
    assert old in list(sections) and len(sections) == 2


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not JSON"),
        ("\x00\x01", "not JSON"),
        ("[]", "not a tuning cache"),
        ("null", "not a tuning cache"),
        ('{"fingerprint": {}}', "not a tuning cache"),
        ('{"sections": 3}', "not a tuning cache"),
        ("[" * 5000 + "]" * 5000, "not a tuning cache"),  # deeper than json's recursion allows
    ],
)
def test_a_file_that_is_no_tuning_cache_is_left_as_it_is(tmp_path, monkeypatch, content, reason):
    """It may be anything the user pointed GROUPCONV_CACHE at by mistake: never rebuilt over."""
    path = tmp_path / "tune.json"
    path.write_text(content)
    use_cache(monkeypatch, path)
    assert_one_warning(forward_backward_works(tune=True), reason)
    assert path.read_text() == content


def test_a_file_too_large_for_a_tuning_cache_is_not_read(tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    with path.open("wb") as sparse:
        sparse.truncate(65 << 20)
    use_cache(monkeypatch, path)
    assert_one_warning(forward_backward_works(tune=True), "65 MiB")
    assert path.stat().st_size == 65 << 20


def test_a_read_only_cache_is_not_replaced(tmp_path, monkeypatch):
    """Renaming over a read-only file succeeds (the directory is writable); its mode says not to."""
    path = tmp_path / "tune.json"
    tuning._replace(path, {"format": tuning.FORMAT, "sections": {}})
    path.chmod(0o444)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda file, mode: mode != os.W_OK and real_access(file, mode))  # not root
    use_cache(monkeypatch, path)
    assert_one_warning(forward_backward_works(tune=True), "read-only")
    assert json.loads(path.read_text())["sections"] == {} and stat.S_IMODE(path.stat().st_mode) == 0o444


def test_a_symlinked_cache_is_written_through_and_keeps_its_permissions(tmp_path, monkeypatch):
    target, link = tmp_path / "dotfiles" / "tune.json", tmp_path / "tune.json"
    target.parent.mkdir()
    tuning._replace(target, {"format": tuning.FORMAT, "sections": {}})
    target.chmod(0o640)
    link.symlink_to(target)
    use_cache(monkeypatch, link)
    tuning.cache().put("k", "native")
    assert link.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [s["entries"] for s in json.loads(target.read_text())["sections"].values()] == [{"k": "native"}]


def test_a_cache_path_ending_in_a_separator_names_a_folder(tmp_path, monkeypatch):
    use_cache(monkeypatch, f"{tmp_path / 'new'}{os.sep}")
    tuning.cache().put("k", "native")
    assert (tmp_path / "new").is_dir() and (tmp_path / "new" / "tune.json").is_file()


def test_a_cache_path_under_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    use_cache(monkeypatch, "~/caches/tune.json")
    tuning.cache().put("k", "native")
    assert (tmp_path / "caches" / "tune.json").is_file() and not (tmp_path / "~").exists()


def test_a_cached_name_of_the_wrong_kind_is_not_used(tmp_path, monkeypatch):
    """A call's entry names a formulation, a layer's a route; a hand-edited file may swap them."""
    use_cache(monkeypatch, tmp_path / "tune.json")
    x, weight, spec = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3), groupconv.ConvSpec(4, 4, 3, groups=2)
    tuning.cache().put(dispatch.call_key("forward", x, weight, spec), "groupconv_channels_first")
    tuning._cache_at.cache_clear()  # read back from the file
    assert dispatch.choose("forward", x, weight, spec) is dispatch.default(spec, x)


def test_unknown_names_in_the_cache_are_ignored(tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    section = {"fingerprint": tuning.fingerprint(), "entries": {"k": "fastest_ever"}}
    path.write_text(json.dumps({"format": 2, "sections": {tuning._section_id(): section}}))
    use_cache(monkeypatch, path)
    with pytest.warns(UserWarning, match="unknown entries"):
        assert tuning.cache().get("k") is None


def test_unknown_entries_of_this_environment_are_kept_when_it_writes(tmp_path, monkeypatch):
    """A newer checkout of the same version may name a route this one does not know: ignored, never deleted."""
    path = tmp_path / "tune.json"
    section = {"fingerprint": tuning.fingerprint(), "entries": {"k": "fastest_ever", "old": "native"}}
    path.write_text(json.dumps({"format": 2, "sections": {tuning._section_id(): section}}))
    use_cache(monkeypatch, path)
    with pytest.warns(UserWarning, match="unknown entries"):
        tuning.cache().put("new", "split")
    entries = json.loads(path.read_text())["sections"][tuning._section_id()]["entries"]
    assert entries == {"k": "fastest_ever", "old": "native", "new": "split"}


def test_a_file_of_a_newer_format_is_left_as_it_is(tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    content = json.dumps({"format": tuning.FORMAT + 1, "sections": {}})
    path.write_text(content)
    use_cache(monkeypatch, path)
    assert_one_warning(forward_backward_works(tune=True), "a newer groupconv wrote it")
    assert path.read_text() == content


def test_other_fields_of_the_file_are_kept(tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"format": tuning.FORMAT, "sections": {}, "comment": "shared by the lab"}))
    use_cache(monkeypatch, path)
    tuning.cache().put("k", "native")
    assert json.loads(path.read_text())["comment"] == "shared by the lab"


def test_an_empty_file_is_an_empty_cache(tmp_path, monkeypatch):
    path = tmp_path / "tune.json"
    path.touch()
    use_cache(monkeypatch, path)
    assert forward_backward_works(tune=True) == []
    assert json.loads(path.read_text())["sections"]


def test_a_process_overwrites_only_the_choices_it_made(tmp_path, monkeypatch):
    """Another process's newer choice of a key this one merely loaded survives this one's next write."""
    path = tmp_path / "tune.json"
    use_cache(monkeypatch, path)
    tuning.cache().put("k", "native")
    retune = "from groupconv import tuning; tuning.cache().put('k', 'split')"
    subprocess.run([sys.executable, "-c", retune], check=True, env={**os.environ, "GROUPCONV_CACHE": str(path)})
    tuning.cache().put("other", "native")
    entries = json.loads(path.read_text())["sections"][tuning._section_id()]["entries"]
    assert entries == {"k": "split", "other": "native"}


def test_threads_tuning_at_once_lose_no_choice(tmp_path, monkeypatch):
    """One thread's write (slow, as on a slow disk) must not drop the choice another thread made meanwhile."""
    path = tmp_path / "tune.json"
    replace = tuning._replace

    def slow_replace(target, document):
        replace(target, document)
        time.sleep(0.3)

    monkeypatch.setattr(tuning, "_replace", slow_replace)
    cache = tuning.Cache(path)
    first = threading.Thread(target=cache.put, args=("a", "native"))
    first.start()
    time.sleep(0.1)
    cache.put("b", "split")
    first.join()
    on_disk = json.loads(path.read_text())["sections"][tuning._section_id()]["entries"]
    assert on_disk == cache.entries == {"a": "native", "b": "split"}


def test_a_cached_entry_reaches_the_dispatcher(tmp_path, monkeypatch):
    use_cache(monkeypatch, tmp_path / "tune.json")
    x, weight, spec = torch.randn(1, 4, 6, 6), torch.randn(4, 2, 3, 3), groupconv.ConvSpec(4, 4, 3, groups=2)
    tuning.cache().put(dispatch.call_key("forward", x, weight, spec), "split")
    tuning._cache_at.cache_clear()  # read back from the file
    assert dispatch.choose("forward", x, weight, spec) is formulations.load("split")


def test_remembered_routes_follow_the_current_cache(tmp_path, monkeypatch):
    """A remembered call skips the cache; another cache becoming current, or new entries, forget them all."""
    layer, x = groupconv.nn.Conv2d(4, 4, 3, groups=2, padding=1), torch.randn(1, 4, 6, 6)
    use_cache(monkeypatch, tmp_path / "a.json")
    layer(x)
    assert len(tuning.remembered) == 1
    tuning.cache().put("some call", "split")
    assert not tuning.remembered
    layer(x)
    use_cache(monkeypatch, tmp_path / "b.json")
    assert tuning.remembered and tuning.cache().path.name == "b.json" and not tuning.remembered
    layer(x)
    with tuning.scratch_cache():
        assert not tuning.remembered
        layer(x)
    assert not tuning.remembered  # the scratch cache's routes leave with it


def _write_entries(path: str, worker: int, count: int) -> None:
    cache = tuning.Cache(tuning.Path(path))
    for i in range(count):
        cache.put(f"worker {worker} call {i}", formulations.NAMES[i % len(formulations.NAMES)])


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(tmp_path):
    path, workers, count = tmp_path / "tune.json", 4, 25
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_entries, args=(str(path), w, count)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    (section,) = json.loads(path.read_text())["sections"].values()
    assert set(section["entries"]) == {f"worker {w} call {i}" for w in range(workers) for i in range(count)}
    assert not list(tmp_path.glob(".tune-*"))  # no temporary file left behind
