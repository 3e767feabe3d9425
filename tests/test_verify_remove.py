import json

from model_shelf.library.records import Health


def test_a_flipped_byte_is_reported_corrupted(shelf, make_model):
    record = shelf.import_model(make_model(), "loras")
    path = shelf.root / "loras" / record.name
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))

    [result] = shelf.verify([record.name])

    assert result.health is Health.CORRUPTED
    assert record.name in result.detail
    assert shelf.find(record.name).health is Health.CORRUPTED


def test_verify_all_ok_and_missing(shelf, make_model):
    keep = shelf.import_model(make_model(), "loras")
    gone = shelf.import_model(make_model(), "vae")
    (shelf.root / "vae" / gone.name).unlink()
    results = {r.model: r.health for r in shelf.verify()}
    assert results == {keep.display(): Health.OK, gone.display(): Health.MISSING}


def test_remove_deletes_file_and_record_together_with_a_journal(shelf, make_model):
    record = shelf.import_model(make_model(), "loras", name="sub/x.safetensors")
    shelf.remove("x.safetensors")
    assert not (shelf.root / "loras" / "sub" / "x.safetensors").exists()
    assert not (shelf.root / "loras" / "sub" / "x.safetensors.shelf.json").exists()
    assert shelf.list_models() == []
    [line] = (shelf.root / ".shelf" / "deletions.jsonl").read_text().splitlines()
    entry = json.loads(line)
    assert entry["record"]["id"] == record.id and entry["reason"] == "removed by user"


def test_remove_a_folder_model(shelf, make_model, tmp_path):
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    make_model("a.safetensors", folder=folder / "unet")
    shelf.import_model(folder, "diffusers")
    shelf.remove("pipe")
    assert not (shelf.root / "diffusers" / "pipe").exists()
    assert not (shelf.root / "diffusers" / "pipe.shelf.json").exists()
