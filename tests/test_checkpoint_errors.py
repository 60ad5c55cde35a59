"""Checkpoint files: permissions, stale temporaries, failed writes, unreadable files, hostile specs."""

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seqgan.checkpoint as checkpoint
from seqgan.checkpoint import (
    CheckpointError,
    build_checked,
    check_writable,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    save_numbered,
)
from tests.conftest import ROOT

REAL_OPEN = os.open


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------------------------------------------
# 1. permissions


def test_checkpoint_has_the_permissions_of_any_other_output(tmp_path):
    ck = save_checkpoint({"v": torch.tensor(1)}, tmp_path / "ck.pt")
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write("{}\n")
    assert _mode(ck) == _mode(tmp_path / "metrics.jsonl")
    save_numbered({"v": torch.tensor(2)}, tmp_path / "adversarial.pt", 2, keep_last=2)
    assert _mode(tmp_path / "adversarial.pt") == _mode(tmp_path / "adversarial_0002.pt") == _mode(ck)


_UMASK_CHILD = """
import os, sys, torch
from seqgan.checkpoint import save_checkpoint
os.umask(0o027)
save_checkpoint({"v": torch.tensor(1)}, sys.argv[1])
open(sys.argv[2], "w").close()
"""


def test_checkpoint_permissions_follow_the_process_umask(tmp_path):
    ck, plain = tmp_path / "ck.pt", tmp_path / "plain.txt"
    subprocess.run([sys.executable, "-c", _UMASK_CHILD, str(ck), str(plain)], cwd=ROOT, check=True)
    assert _mode(ck) == _mode(plain) == 0o640


# ---------------------------------------------------------------------------------------------------------
# 2. stale temporaries


def _leftover_of_a_killed_writer(path: Path, monkeypatch) -> str:
    """Runs save_checkpoint up to the rename and stops it there without its clean-up, as SIGKILL would."""

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(os, "replace", killed)
        m.setattr(checkpoint, "_unlink_quietly", lambda p: None)
        before = {p.name for p in path.parent.iterdir()} if path.parent.is_dir() else set()
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint({"v": torch.tensor(9)}, path)
    (name,) = {p.name for p in path.parent.iterdir()} - before
    return name


def test_remove_stale_temporaries_removes_only_the_leftovers_of_that_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"v": torch.tensor(1)}, tmp_path / "pretrain.pt")
    save_checkpoint({"v": torch.tensor(1)}, tmp_path / "pretrain_0003.pt")
    stale = {
        _leftover_of_a_killed_writer(path, monkeypatch),
        _leftover_of_a_killed_writer(tmp_path / "pretrain_0004.pt", monkeypatch),
        ".pretrain.pt.k2_x9az1.tmp",  # tempfile.mkstemp's names (older versions)
        f".pretrain.pt.{os.getpid()}.link",  # save_numbered's hard link
    }
    assert all(n.startswith(".pretrain") and n.endswith((".tmp", ".link")) for n in stale)
    for name in stale - set(os.listdir(tmp_path)):
        (tmp_path / name).write_bytes(b"partial")
    survivors = {
        "pretrain.pt",
        "pretrain_0003.pt",
        ".hidden",
        ".pretrain.pt.notes",
        ".pretrain_best.pt.abc123.tmp",  # another checkpoint's leftover
        ".adversarial.pt.abc123.tmp",
        "pretrain.pt.abc123.tmp",  # not a dot-file
    }
    for name in survivors - set(os.listdir(tmp_path)):
        (tmp_path / name).write_text("keep")
    (tmp_path / ".pretrain.pt.folder.tmp").mkdir()  # a folder is never removed
    survivors.add(".pretrain.pt.folder.tmp")
    removed = remove_stale_temporaries(path)
    assert sorted(p.name for p in removed) == sorted(stale)
    assert all(p.parent == tmp_path for p in removed)
    assert set(os.listdir(tmp_path)) == survivors
    assert int(load_checkpoint(path)["v"]) == 1
    assert remove_stale_temporaries(path) == []
    assert remove_stale_temporaries(tmp_path / "missing" / "pretrain.pt") == []


# ---------------------------------------------------------------------------------------------------------
# 3. failed writes


def _disk_full(monkeypatch, skip: int = 0):
    """Temporary files (``*.tmp``) created after the first ``skip`` ones are created, but every write to them
    fails with a real ENOSPC (their descriptor is /dev/full)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    count = []

    def full_open(path, flags, mode=0o777, *args, **kwargs):
        fd = REAL_OPEN(path, flags, mode, *args, **kwargs)
        if str(path).endswith(".tmp"):
            count.append(path)
            if len(count) > skip:
                full = REAL_OPEN("/dev/full", os.O_WRONLY)
                os.dup2(full, fd)
                os.close(full)
        return fd

    monkeypatch.setattr(os, "open", full_open)


def _failing_open(monkeypatch, code: int, text: str):
    """Creating a temporary file fails with ``OSError(code, text)`` (what a read-only folder gives non-root)."""

    def refuse(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise OSError(code, text, str(path))
        return REAL_OPEN(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)


def _payload(n: int = 1) -> dict:
    return {"v": torch.arange(50_000) * n}


def test_disk_full_keeps_the_previous_checkpoint_byte_identical(tmp_path, monkeypatch):
    path = save_checkpoint(_payload(), tmp_path / "pretrain.pt")
    before = path.read_bytes()
    _disk_full(monkeypatch)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(_payload(2), path)
    assert _one_line(err) == (
        f"cannot write {path}: No space left on device (errno 28); the previous checkpoint is left as it was"
    )
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["pretrain.pt"]
    # without a previous checkpoint the message says so
    with pytest.raises(CheckpointError, match=r"new.pt: No space left on device \(errno 28\); no checkpoint"):
        save_checkpoint(_payload(2), tmp_path / "new.pt")
    assert os.listdir(tmp_path) == ["pretrain.pt"]


@pytest.mark.parametrize(
    "code, text",
    [(errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only file system")],
)
def test_unwritable_folder_gives_one_line(tmp_path, monkeypatch, code, text):
    path = save_checkpoint(_payload(), tmp_path / "runs" / "x" / "pretrain.pt")
    before = path.read_bytes()
    _failing_open(monkeypatch, code, text)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(_payload(2), path)
    assert _one_line(err) == (
        f"cannot write {path}: {text} (errno {code}); the previous checkpoint is left as it was"
    )
    assert path.read_bytes() == before and os.listdir(path.parent) == ["pretrain.pt"]


def test_a_file_where_a_folder_should_be(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    for path in (blocker / "pretrain.pt", blocker / "a" / "b" / "pretrain.pt"):
        with pytest.raises(CheckpointError) as err:
            save_checkpoint(_payload(), path)
        assert _one_line(err) == (
            f"cannot write {path}: {blocker} is a file, not a folder (errno 20); no checkpoint was written"
        )
    assert os.listdir(tmp_path) == ["runs"] and blocker.read_text() == "not a folder"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_a_folder_that_cannot_be_created():
    path = Path("/proc/seqgan_test/x.pt")
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(_payload(), path)
    assert _one_line(err) == (
        f"cannot write {path}: the folder /proc/seqgan_test cannot be created: No such file or directory "
        "(errno 2); no checkpoint was written"
    )
    with pytest.raises(CheckpointError, match=r"^cannot write /proc/seqgan_test/x_0003.pt: the folder"):
        save_numbered(_payload(), path, 3, keep_last=2)


def test_save_numbered_disk_full_loses_nothing(tmp_path, monkeypatch):
    path = tmp_path / "adversarial.pt"
    for n in (1, 2):
        save_numbered(_payload(n), path, n, keep_last=2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    _disk_full(monkeypatch)
    with pytest.raises(CheckpointError) as err:
        save_numbered(_payload(3), path, 3, keep_last=2)
    assert _one_line(err) == (
        f"cannot write {tmp_path / 'adversarial_0003.pt'}: No space left on device (errno 28); the previous "
        "checkpoint, adversarial.pt, is left as it was"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # adversarial_0001.pt kept too


def test_save_numbered_copy_fallback_failing_keeps_the_stable_name(tmp_path, monkeypatch):
    path = tmp_path / "adversarial.pt"
    save_numbered(_payload(1), path, 1, keep_last=2)
    before = path.read_bytes()

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    _disk_full(monkeypatch, skip=1)  # the numbered file is written, the copy under the stable name is not
    with pytest.raises(CheckpointError) as err:
        save_numbered(_payload(2), path, 2, keep_last=2)
    assert _one_line(err) == (
        f"cannot write {path}: No space left on device (errno 28); the previous checkpoint is left as it was"
    )
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["adversarial.pt", "adversarial_0001.pt", "adversarial_0002.pt"]
    monkeypatch.undo()
    assert int(load_checkpoint(tmp_path / "adversarial_0002.pt")["v"][1]) == 2  # complete


def test_a_payload_that_cannot_be_saved_is_not_reported_as_a_write_failure(tmp_path):
    path = save_checkpoint(_payload(), tmp_path / "ck.pt")
    before = path.read_bytes()
    try:
        raise OSError(errno.EIO, "an error the caller is handling")
    except OSError:
        with pytest.raises(Exception) as err:
            save_checkpoint({"f": lambda: 0}, path)  # a programming error, not a full disk
    assert not isinstance(err.value, CheckpointError)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.pt"]


def test_check_writable(tmp_path, monkeypatch):
    folder = tmp_path / "runs" / "new"
    check_writable(folder)
    assert folder.is_dir() and os.listdir(folder) == []
    check_writable(folder)  # an existing folder
    assert os.listdir(folder) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError) as err:
        check_writable(tmp_path / "file" / "out")
    assert _one_line(err) == (
        f"cannot write to {tmp_path / 'file' / 'out'}: {tmp_path / 'file'} is a file, not a folder (errno 20)"
    )
    if os.path.isdir("/proc/self"):
        with pytest.raises(CheckpointError) as err:
            check_writable("/proc/seqgan_test")
        assert _one_line(err) == (
            "cannot write to /proc/seqgan_test: the folder /proc/seqgan_test cannot be created: No such file or "
            "directory (errno 2)"
        )
    with monkeypatch.context() as m:
        _failing_open(m, errno.EROFS, "Read-only file system")
        with pytest.raises(CheckpointError) as err:
            check_writable(folder)
    assert _one_line(err) == f"cannot write to {folder}: Read-only file system (errno 30)"
    with monkeypatch.context() as m:
        _disk_full(m)
        with pytest.raises(CheckpointError) as err:
            check_writable(folder)
    assert _one_line(err) == f"cannot write to {folder}: No space left on device (errno 28)"
    assert os.listdir(folder) == []


# ---------------------------------------------------------------------------------------------------------
# 4. load errors


class Thing:
    """A harmless object that ``weights_only`` loading refuses."""

    def __init__(self) -> None:
        self.x = 1


def _mark(path: str) -> None:
    Path(path).write_text("code from the checkpoint ran")


class RunsCode:
    """Unpickling this (without ``weights_only``) would call ``_mark``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_mark, (self.marker,))


def test_load_errors_are_told_apart(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "missing.pt")
    assert _one_line(err) == f"checkpoint not found: {tmp_path / 'missing.pt'}"

    good = save_checkpoint(_payload(), tmp_path / "good.pt")
    damaged = "it is damaged (cut short?) or not a PyTorch checkpoint"
    for name, data in [
        ("cut.pt", good.read_bytes()[: len(good.read_bytes()) // 2]),
        ("text.pt", b"hello world, this is not a checkpoint\n"),
        ("empty.pt", b""),
    ]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        assert _one_line(err).startswith(f"cannot read checkpoint {tmp_path / name}: {damaged}")

    torch.save({"format_version": 1, "thing": Thing()}, tmp_path / "thing.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "thing.pt")
    assert _one_line(err) == (
        f"{tmp_path / 'thing.pt'} contains objects that are not allowed in a checkpoint "
        f"({__name__}.Thing); it was not loaded"
    )

    marker = tmp_path / "ran"
    torch.save({"format_version": 1, "x": RunsCode(marker)}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "code.pt")
    assert _one_line(err) == (
        f"{tmp_path / 'code.pt'} contains objects that are not allowed in a checkpoint ({__name__}._mark); "
        "it was not loaded"
    )
    assert not marker.exists()

    for name, obj, why in [
        ("plain.pt", {"weights": torch.zeros(2)}, "no format_version"),
        ("list.pt", [torch.zeros(2)], "it holds a list, not a dict"),
        ("bad_version.pt", {"format_version": "one"}, "format_version 'one'"),
    ]:
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        assert _one_line(err) == f"{tmp_path / name} is not a seqgan checkpoint ({why})"
    torch.save({"format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="has format 99; this seqgan reads <= 1"):
        load_checkpoint(tmp_path / "future.pt")


# ---------------------------------------------------------------------------------------------------------
# 5. edited or crafted specs and weights


def _lstm():
    from seqgan.models import LSTMGenerator

    return LSTMGenerator.from_spec, LSTMGenerator(20, 16, 32)


def _cnn():
    from seqgan.models import CNNDiscriminator

    return CNNDiscriminator.from_spec, CNNDiscriminator(20, 8, [2, 3], [4, 5])


def _cnn_spectral():
    from seqgan.models import CNNDiscriminator

    return CNNDiscriminator.from_spec, CNNDiscriminator(20, 8, [2, 3], [4, 5], spectral_norm=True)


def _rnn():
    from seqgan.models import RNNDiscriminator

    return RNNDiscriminator.from_spec, RNNDiscriminator(20, 8, 16)


def _transformer():
    from seqgan.models.transformer import TransformerGenerator

    model = TransformerGenerator.from_config(
        vocab_size=50, max_len=8, pad_id=0, bos_id=1, eos_id=2, n_layer=1, n_head=2, n_embd=16
    )
    return TransformerGenerator.from_spec, model


def _seq2seq():
    from seqgan.models import Seq2SeqLSTM

    return Seq2SeqLSTM.from_spec, Seq2SeqLSTM(20, 8, 16, attention=True)


def _seq2seq_transformer():
    from seqgan.models import Seq2SeqTransformer

    return Seq2SeqTransformer.from_spec, Seq2SeqTransformer(20, 8, 1, 2, 16)


def _pair():
    from seqgan.models import PairDiscriminator

    return PairDiscriminator.from_spec, PairDiscriminator(20, 8, [2], [3], hidden=8)


def _dispatch(spec: dict):
    """A plain function that picks the class from ``kind`` (like the package's spec dispatchers)."""
    from seqgan.models import CNNDiscriminator, LSTMGenerator

    return {"lstm": LSTMGenerator, "cnn": CNNDiscriminator}[spec["kind"]].from_spec(spec)


def _dispatched():
    from seqgan.models import LSTMGenerator

    return _dispatch, LSTMGenerator(20, 8, 8)


KINDS = {
    "lstm": _lstm,
    "cnn": _cnn,
    "cnn_spectral_norm": _cnn_spectral,
    "rnn": _rnn,
    "transformer": _transformer,
    "seq2seq": _seq2seq,
    "seq2seq_transformer": _seq2seq_transformer,
    "pair_cnn": _pair,
    "dispatching_function": _dispatched,
}


def _stored(tmp_path, make):
    """(builder spy, the calls' devices, the original model, its spec and weights as read back from a file)."""
    from_spec, model = make()
    path = save_checkpoint(
        {"generator": {"spec": model.spec(), "state_dict": model.state_dict()}}, tmp_path / "a.pt"
    )
    ckpt = load_checkpoint(path)
    devices = []

    def spy(spec):
        devices.append(torch.empty(0).device.type)  # the device the model's tensors are created on
        return from_spec(spec)

    return spy, devices, model, ckpt["generator"]["spec"], ckpt["generator"]["state_dict"], path


def _vocab_key(spec: dict) -> dict:
    return spec["hf_config"] if "hf_config" in spec else spec


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_model_kind_builds_on_the_meta_device(kind):
    from_spec, model = KINDS[kind]()
    with torch.device("meta"):
        meta = from_spec(model.spec())
    tensors = [*meta.parameters(), *meta.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)


@pytest.mark.parametrize("kind", list(KINDS))
def test_build_checked_round_trip(tmp_path, kind):
    spy, devices, model, spec, state, path = _stored(tmp_path, KINDS[kind])
    rebuilt = build_checked(spy, spec, state, "generator", path)
    assert devices == ["meta", "cpu"] and type(rebuilt) is type(model)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in rebuilt.state_dict().items())
    if kind == "cnn_spectral_norm":
        assert any(k.endswith("parametrizations.weight.original") for k in state)
        x = torch.randint(3, 20, (2, 6))
        model.eval(), rebuilt.eval()
        torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("kind", list(KINDS))
def test_build_checked_refuses_edited_specs_and_weights(tmp_path, kind):
    spy, devices, model, spec, state, path = _stored(tmp_path, KINDS[kind])

    def refused(spec, state) -> str:
        devices.clear()
        with pytest.raises(CheckpointError) as err:
            build_checked(spy, spec, state, "generator", path)
        assert devices in ([], ["meta"])  # never built for real
        return _one_line(err)

    assert refused({**spec, "foo": 1}, state) == f"{path}: generator spec has an unexpected key 'foo'"

    required = "pad_id" if kind == "transformer" else "vocab_size"
    fewer = {k: v for k, v in spec.items() if k != required}
    assert refused(fewer, state) == f"{path}: generator spec is missing '{required}'"

    last = list(state)[-1]
    fewer_tensors = {k: v for k, v in state.items() if k != last}
    assert (
        refused(spec, fewer_tensors) == f"{path}: generator weights do not match its spec: missing '{last}'"
    )
    more = {**state, "extra.weight": torch.zeros(2)}
    assert (
        refused(spec, more) == f"{path}: generator weights do not match its spec: unexpected 'extra.weight'"
    )

    huge = {k: dict(v) if isinstance(v, dict) else v for k, v in spec.items()}
    _vocab_key(huge)["vocab_size"] = 10**9
    msg = refused(huge, state)
    assert msg.startswith(f"{path}: generator weights do not match its spec: '")
    assert "in the file but (1000000000, " in msg

    assert (
        refused(spec, {**state, last: "not a tensor"})
        == f"{path}: generator weights are not a dict of tensors"
    )
    assert refused([1, 2], state) == f"{path}: generator spec is not a dict (it is a list)"


def test_build_checked_names_sizes_and_refuses_impossible_specs(tmp_path):
    spy, devices, model, spec, state, path = _stored(tmp_path, _lstm)
    with pytest.raises(CheckpointError) as err:
        build_checked(spy, {**spec, "hidden_dim": 10**6}, state, "generator", path)
    assert _one_line(err) == (
        f"{path}: generator weights do not match its spec: 'lstm.weight_ih_l0' is (128, 16) in the file but "
        "(4000000, 16) by the spec; 'lstm.weight_hh_l0' is (128, 32) in the file but (4000000, 1000000) by the "
        "spec; 'lstm.bias_ih_l0' is (128,) in the file but (4000000,) by the spec; 2 more shapes differ"
    )
    with pytest.raises(CheckpointError) as err:
        build_checked(spy, {**spec, "hidden_dim": 10**9}, state, "generator", path)
    assert _one_line(err).startswith(f"{path}: generator spec asks for a tensor too large to exist (")
    with pytest.raises(CheckpointError) as err:
        build_checked(spy, {**spec, "num_layers": 10**6}, state, "generator", path)
    assert _one_line(err) == (
        f"{path}: generator spec has num_layers=1000000 but the file holds only {len(state)} tensors"
    )
    with pytest.raises(CheckpointError) as err:
        build_checked(spy, {**spec, "hidden_dim": -3}, state, "generator", path)
    assert _one_line(err).startswith(f"{path}: generator spec is invalid: ")

    spy, devices, model, spec, state, path = _stored(tmp_path, _cnn)
    with pytest.raises(CheckpointError) as err:
        build_checked(spy, {**spec, "num_filters": [4]}, state, "discriminator", path)
    assert _one_line(err) == (
        f"{path}: discriminator spec is invalid: filter_sizes and num_filters must have the same length"
    )
    with pytest.raises(CheckpointError) as err:
        build_checked(
            spy, {**spec, "filter_sizes": [2] * 10**5, "num_filters": [1] * 10**5}, state, "d", path
        )
    assert _one_line(err) == (
        f"{path}: d spec has filter_sizes lists 100000 layers but the file holds only {len(state)} tensors"
    )

    spy, devices, model, spec, state, path = _stored(tmp_path, _transformer)
    hf = dict(spec["hf_config"], n_layer=10**6)
    with pytest.raises(CheckpointError) as err:
        build_checked(spy, {**spec, "hf_config": hf}, state, "generator", path)
    assert _one_line(err).startswith(f"{path}: generator spec has n_layer=1000000 but the file holds only ")
    with pytest.raises(CheckpointError) as err:
        build_checked(spy, {**spec, "kind": "lstm"}, state, "generator", path)
    assert (
        _one_line(err) == f"{path}: generator spec is invalid: not a transformer generator spec: kind='lstm'"
    )
    assert "cpu" not in devices
