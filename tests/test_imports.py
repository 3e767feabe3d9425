"""Import into type folders: move, copy, link; atomic; bad inputs change nothing."""

import hashlib
import json

import numpy as np
import pytest
from conftest import tree_snapshot

from model_shelf.library import HashTiming, ImportMode, Shelf
from model_shelf.library.errors import (
    CorruptModelError,
    NameClashError,
    NotAModelError,
    SourceNotFoundError,
    UnknownTypeError,
    UnsafeNameError,
)
from model_shelf.library.records import HashState, ModelKind


def sha256_of(path):
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_copy_hashes_while_copying_and_records(shelf, make_model):
    src = make_model("detail.safetensors")
    record = shelf.import_model(src, "loras", ImportMode.COPY)

    placed = shelf.root / "loras" / "detail.safetensors"
    assert placed.read_bytes() == src.read_bytes()
    assert src.exists()  # a copy leaves the source
    assert record.hashes["sha256"] == sha256_of(src)
    assert record.hash_state is HashState.HASHED
    assert record.probe.kind == "lora"
    sidecar = json.loads((shelf.root / "loras" / "detail.safetensors.shelf.json").read_text())
    assert sidecar["hashes"]["sha256"] == sha256_of(src)
    assert sidecar["schema_version"] == 1
    assert [r.name for r in shelf.list_models("loras")] == ["detail.safetensors"]


def test_move_is_a_rename(shelf, make_model):
    src = make_model()
    inode = src.stat().st_ino
    expected = sha256_of(src)
    record = shelf.import_model(src, "checkpoints", ImportMode.MOVE, name="sd/base.safetensors")
    placed = shelf.root / "checkpoints" / "sd" / "base.safetensors"
    assert not src.exists()
    assert placed.stat().st_ino == inode  # same file, not a copy
    assert record.name == "sd/base.safetensors"
    assert record.hashes["sha256"] == expected


def test_move_with_deferred_hashing_records_fingerprint_then_hashes(shelf, make_model):
    src = make_model()
    expected = sha256_of(src)
    record = shelf.import_model(src, "vae", ImportMode.MOVE, hashing=HashTiming.DEFERRED)
    assert record.hash_state is HashState.PENDING and record.hashes == {}
    assert record.files[0].size == (shelf.root / "vae" / record.name).stat().st_size

    [result] = shelf.hash_pending()
    assert result.health.value == "ok"
    assert shelf.find(record.name).hashes["sha256"] == expected


def test_link_is_a_hardlink_on_the_same_filesystem(shelf, make_model):
    src = make_model()
    shelf.import_model(src, "loras", ImportMode.LINK)
    placed = shelf.root / "loras" / src.name
    assert placed.stat().st_ino == src.stat().st_ino
    assert src.stat().st_nlink == 2


def test_name_clash_is_reported_and_nothing_overwritten(shelf, make_model):
    first = make_model("same.safetensors", folder=shelf.root.parent / "a", seed=1)
    second = make_model("same.safetensors", folder=shelf.root.parent / "b", seed=2)
    shelf.import_model(first, "loras", ImportMode.COPY)
    before = tree_snapshot(shelf.root)

    with pytest.raises(NameClashError, match=r"same\.safetensors already exists in loras") as info:
        shelf.import_model(second, "loras", ImportMode.MOVE)

    assert info.value.code == "NAME_EXISTS"
    assert tree_snapshot(shelf.root) == before
    assert (shelf.root / "loras" / "same.safetensors").read_bytes() == first.read_bytes()
    assert second.exists()


@pytest.mark.parametrize(
    ("args", "error", "code"),
    [
        ({"path": "missing.safetensors"}, SourceNotFoundError, "SOURCE_NOT_FOUND"),
        ({"model_type": "pictures"}, UnknownTypeError, "UNKNOWN_TYPE"),
        ({"name": "../escape.safetensors"}, UnsafeNameError, "UNSAFE_NAME"),
        ({"name": "a/../../escape.safetensors"}, UnsafeNameError, "UNSAFE_NAME"),
    ],
)
@pytest.mark.parametrize("mode", list(ImportMode))
def test_bad_inputs_change_nothing(shelf, make_model, tmp_path, args, error, code, mode):
    src = make_model()
    call = {"path": src, "model_type": "loras", "name": None, **args}
    if call["path"] == "missing.safetensors":
        call["path"] = tmp_path / "missing.safetensors"
    before_lib, before_src = tree_snapshot(shelf.root), tree_snapshot(src.parent)

    with pytest.raises(error) as info:
        shelf.import_model(call["path"], call["model_type"], mode, name=call["name"])

    assert info.value.code == code
    assert tree_snapshot(shelf.root) == before_lib
    assert tree_snapshot(src.parent) == before_src
    assert not (tmp_path / "escape.safetensors").exists()


@pytest.mark.parametrize("cut", [1, 50, 4000])
def test_truncated_safetensors_is_refused_before_any_change(shelf, make_model, cut):
    src = make_model()
    data = src.read_bytes()
    src.write_bytes(data[: len(data) - cut] if cut < len(data) else data[:5])
    before = tree_snapshot(shelf.root)
    with pytest.raises(CorruptModelError, match=src.name):
        shelf.import_model(src, "loras", ImportMode.MOVE)
    assert tree_snapshot(shelf.root) == before
    assert src.exists()


def test_a_text_file_is_not_a_model(shelf, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    with pytest.raises(NotAModelError, match=r"notes\.txt is not a model file"):
        shelf.import_model(notes, "loras")


def test_sharded_set_is_one_model(shelf, make_model, tmp_path):
    folder = tmp_path / "t5"
    shards = [
        make_model(f"model-0000{i}-of-00003.safetensors", folder=folder, seed=i) for i in (1, 2, 3)
    ]
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {}}')

    record = shelf.import_model(shards[1], "text_encoders", ImportMode.COPY)  # any shard will do

    assert record.kind is ModelKind.SHARDED
    assert record.name == "model-00001-of-00003.safetensors"
    assert sorted(f.path for f in record.files) == sorted(
        [s.name for s in shards] + ["model.safetensors.index.json"]
    )
    assert record.size == sum(p.stat().st_size for p in folder.iterdir())
    assert record.probe.tensor_count == 6  # two tensors per shard, counted once each
    assert len(shelf.list_models("text_encoders")) == 1


def test_incomplete_sharded_set_is_refused(shelf, make_model, tmp_path):
    folder = tmp_path / "t5"
    make_model("model-00001-of-00002.safetensors", folder=folder)
    with pytest.raises(CorruptModelError, match="missing model-00002-of-00002"):
        shelf.import_model(folder / "model-00001-of-00002.safetensors", "text_encoders")


def test_diffusers_folder_is_one_model(shelf, make_model, tmp_path):
    folder = tmp_path / "sdxl-diffusers"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline"})
    )
    make_model("diffusion_pytorch_model.safetensors", folder=folder / "unet")
    make_model("model.safetensors", folder=folder / "text_encoder")

    record = shelf.import_model(folder, "diffusers", ImportMode.MOVE)

    assert record.kind is ModelKind.FOLDER
    assert record.name == "sdxl-diffusers"
    assert {f.path for f in record.files} == {
        "sdxl-diffusers/model_index.json",
        "sdxl-diffusers/unet/diffusion_pytorch_model.safetensors",
        "sdxl-diffusers/text_encoder/model.safetensors",
    }
    assert record.probe.architecture == "sdxl"
    assert record.hashes["sha256"].startswith("sha256:")
    assert (shelf.root / "diffusers" / "sdxl-diffusers.shelf.json").is_file()


def test_copy_of_a_folder_matches_the_move_identity(shelf, make_model, tmp_path):
    folder = tmp_path / "pipe"
    (folder).mkdir()
    (folder / "model_index.json").write_text("{}")
    make_model("a.safetensors", folder=folder)
    copied = shelf.import_model(folder, "diffusers", ImportMode.COPY, name="pipe-copy")
    moved = shelf.import_model(folder, "diffusers", ImportMode.MOVE, name="pipe-copy-2")
    # Same content, names differ only in the top folder: per-file digests are equal.
    assert [f.hashes for f in copied.files] == [f.hashes for f in moved.files]


def test_probe_results_are_recorded(shelf, make_model):
    src = make_model(
        tensors={
            "double_blocks.0.img_attn.qkv.weight": np.zeros((6, 2), np.float16),
            "single_blocks.0.linear1.weight": np.zeros((3, 2), np.float32),
        }
    )
    record = shelf.import_model(src, "diffusion_models")
    assert record.probe.architecture == "flux"
    assert record.probe.parameter_count == 18
    assert record.probe.dtypes == {"F16": 1, "F32": 1}


def test_a_scan_never_replaces_a_fuller_record(shelf, make_model):
    """Another process's scan may find a freshly placed file before its importer wrote the
    record: registering it in place must not overwrite the importer's record."""
    from model_shelf.library.imports import find_unit

    src = make_model()
    record = shelf.import_model(src, "loras", ImportMode.COPY, name="full.safetensors")
    record.aliases = ["from-a-workflow.safetensors"]
    shelf.catalog.save(record)

    with pytest.raises(NameClashError):
        shelf.importer.register_in_place(find_unit(shelf.root / "loras" / "full.safetensors"))

    kept = shelf.find("full.safetensors")
    assert kept.id == record.id and kept.aliases == ["from-a-workflow.safetensors"]


def test_a_name_without_extension_keeps_the_files(shelf, make_model):
    record = shelf.import_model(make_model(), "checkpoints", name="sdxl/base")
    assert record.name == "sdxl/base.safetensors"
    assert (shelf.root / "checkpoints" / "sdxl" / "base.safetensors").is_file()


def test_a_plain_folder_imports_each_model_apart(make_model, tmp_path, capsys):
    """issue 16: ``import DIR`` of separate files made one model of them all."""
    from model_shelf.cli import main

    folder = tmp_path / "loras-to-import"
    for name in ["a.safetensors", "b.safetensors", "styles/c.safetensors"]:
        make_model(name, folder=folder)
    for i in (1, 2):  # a sharded set inside stays one model
        make_model(f"big-0000{i}-of-00002.safetensors", folder=folder / "big")
    pipe = folder / "pipe"  # and so does a diffusers folder
    (pipe / "unet").mkdir(parents=True)
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "Pipeline"}))
    make_model("diffusion_pytorch_model.safetensors", folder=pipe / "unet")
    make_model("incomplete-00001-of-00002.safetensors", folder=folder / "broken")
    root = tmp_path / "library"

    code = main(["--root", str(root), "import", str(folder), "--type", "loras", "--json"])

    answer = json.loads(capsys.readouterr().out)
    assert code == 1  # one set was incomplete: named, the rest imported all the same
    assert sorted(r["name"] for r in answer["imported"]) == [
        "a.safetensors",
        "b.safetensors",
        "big/big-00001-of-00002.safetensors",
        "pipe",
        "styles/c.safetensors",
    ]
    assert [f["code"] for f in answer["failed"]] == ["CORRUPT_FILE"]
    assert "incomplete" in answer["failed"][0]["message"]
    with Shelf.open(root) as opened:
        kinds = {r.name: r.kind for r in opened.list_models("loras")}
    assert kinds["pipe"] is ModelKind.FOLDER
    assert kinds["big/big-00001-of-00002.safetensors"] is ModelKind.SHARDED
    assert kinds["a.safetensors"] is ModelKind.FILE


def test_a_folder_model_or_one_file_is_still_one_model(shelf, make_model, tmp_path):
    pipe = tmp_path / "pipe"
    (pipe / "vae").mkdir(parents=True)
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "Pipeline"}))
    make_model("diffusion_pytorch_model.safetensors", folder=pipe / "vae")
    batch = shelf.import_path(pipe, "diffusers", name="my-pipe")
    assert [(r.name, r.kind) for r in batch.imported] == [("my-pipe", ModelKind.FOLDER)]
    single = shelf.import_path(make_model("one.safetensors"), "loras")
    assert [r.name for r in single.imported] == ["one.safetensors"] and not single.failed
