"""Adopting a ComfyUI models/ folder: identical content kept once, nothing else deleted."""

import hashlib

import pytest

from model_shelf.library import ImportMode


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def comfy_models(tmp_path, make_model):
    models = tmp_path / "ComfyUI" / "models"
    a = make_model("a.safetensors", folder=models / "loras", seed=1)
    make_model("copy-of-a.safetensors", folder=models / "loras" / "old", seed=1)  # same bytes
    make_model("b.safetensors", folder=models / "checkpoints", seed=2)
    make_model("t5.safetensors", folder=models / "clip", seed=3)  # legacy folder name
    (models / "configs").mkdir(parents=True)
    (models / "configs" / "v1.yaml").write_text("model: {}")
    return models, sha(a)


def test_adopt_move_keeps_identical_content_once(shelf, comfy_models):
    models, _ = comfy_models
    all_hashes = {sha(p) for p in models.rglob("*.safetensors")}

    report = shelf.adopt(models, ImportMode.MOVE)

    assert sorted(report.imported) == [
        "checkpoints/b.safetensors",
        "loras/a.safetensors",
        "text_encoders/t5.safetensors",
    ]
    assert report.duplicates == [
        {
            "path": str(models / "loras" / "old" / "copy-of-a.safetensors"),
            "kept": "loras/a.safetensors",
            "removed": "True",
        }
    ]
    assert not list(models.rglob("*.safetensors"))  # moved or identical-and-removed
    assert (models / "configs" / "v1.yaml").exists()  # not a model folder: untouched
    kept = shelf.find("a.safetensors")
    assert kept.aliases == ["old/copy-of-a.safetensors"]
    assert shelf.find("old/copy-of-a.safetensors").id == kept.id  # old name still resolves
    library_hashes = {r.hashes["sha256"].split(":")[1] for r in shelf.list_models()}
    assert library_hashes == all_hashes  # every distinct content is kept
    assert "identical to loras/a.safetensors" in (shelf.root / ".shelf/deletions.jsonl").read_text()


def test_adopt_link_deletes_nothing(shelf, comfy_models):
    models, _ = comfy_models
    before = sorted(p.relative_to(models) for p in models.rglob("*") if p.is_file())
    report = shelf.adopt(models, ImportMode.LINK)
    assert len(report.imported) == 3 and len(report.duplicates) == 1
    assert sorted(p.relative_to(models) for p in models.rglob("*") if p.is_file()) == before
    assert (shelf.root / "loras" / "a.safetensors").stat().st_nlink == 2


def test_adopt_leaves_different_content_with_a_taken_name(shelf, comfy_models, make_model):
    models, _ = comfy_models
    shelf.import_model(make_model(seed=99), "checkpoints", name="b.safetensors")
    report = shelf.adopt(models, ImportMode.MOVE)
    assert (models / "checkpoints" / "b.safetensors").exists()  # different bytes: kept in place
    [skipped] = [s for s in report.skipped if s["code"] == "NAME_EXISTS"]
    assert skipped["path"].endswith("b.safetensors")


def test_adopt_refuses_the_library_itself(shelf):
    from model_shelf.library.errors import UnsafeNameError

    with pytest.raises(UnsafeNameError, match="overlaps the library root"):
        shelf.adopt(shelf.root, ImportMode.MOVE)
