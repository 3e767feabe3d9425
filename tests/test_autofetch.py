"""library/autofetch.py and the metadata it reads (library/workflows.py): planning, queueing
and rewriting a prompt over a real library, without ComfyUI (the library-only resolver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from remote_server import sha256_of, write_model_file

from model_shelf.library import ImportMode, Shelf
from model_shelf.library.autofetch import (
    Availability,
    LibraryResolver,
    execute,
    plan,
    rewrite,
)
from model_shelf.library.workflows import ModelEntry, model_entries, prompt_inputs

MIB = 1024 * 1024


def body_with(prompt: dict[str, Any], models: list[dict[str, Any]]) -> dict[str, Any]:
    workflow = {"nodes": [], "links": [], "version": 0.4, "models": models}
    return {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": workflow}}}


def test_model_entries_are_read_as_the_page_reads_them() -> None:
    workflow = {
        "nodes": [
            {
                "id": 1,
                "type": "UNETLoader",
                "properties": {
                    "models": [
                        {"name": "a.safetensors", "url": "https://h/a", "directory": "unet"},
                        {"name": "no-url.safetensors", "directory": "vae"},  # not a zModelFile
                        "junk",
                    ]
                },
            }
        ],
        "models": [
            {
                "name": "b.safetensors",
                "url": "https://h/b",
                "directory": "clip",
                "hash": "AB" * 32,
                "hash_type": "SHA256",
            },
            {"name": "c.gguf", "url": "https://h/c", "directory": "somewhere_else", "hash": "x"},
        ],
    }
    entries = {e.name: e for e in model_entries(workflow)}
    assert set(entries) == {"a.safetensors", "b.safetensors", "c.gguf"}
    assert entries["a.safetensors"].model_type == "diffusion_models"  # legacy folder names
    assert entries["b.safetensors"].model_type == "text_encoders"
    assert entries["b.safetensors"].sha256 == "sha256:" + "ab" * 32
    assert entries["c.gguf"].model_type is None and entries["c.gguf"].sha256 is None
    md5 = ModelEntry(name="d", url="https://h/d", directory="vae", hash="ab" * 32, hash_type="md5")
    assert md5.sha256 is None


def test_known_loaders_and_the_generic_rule() -> None:
    entries = model_entries(
        {
            "nodes": [],
            "models": [
                {"name": "pack.safetensors", "url": "https://h/p", "directory": "upscale_models"}
            ],
        }
    )
    prompt = {
        "1": {
            "class_type": "DualCLIPLoader",
            "inputs": {
                "clip_name1": "t5.safetensors",
                "clip_name2": "l.safetensors",
                "type": "flux",
            },
        },
        "2": {
            "class_type": "SomePack Upscaler",
            "inputs": {"upscaler_name": "pack.safetensors", "image": ["9", 0]},
        },
        "3": {
            "class_type": "SomePack Other",
            "inputs": {"text": "story.safetensors", "model_name": "free.safetensors"},
        },
    }
    found = {(i.node_id, i.input_name): i.model_type for i in prompt_inputs(prompt, entries)}
    assert found == {
        ("1", "clip_name1"): "text_encoders",
        ("1", "clip_name2"): "text_encoders",
        ("2", "upscaler_name"): "upscale_models",  # typed by the metadata
        ("3", "model_name"): None,  # a model file nothing describes: left alone by auto-fetch
    }


def test_plan_queue_and_rewrite(shelf: Shelf, tmp_path: Path) -> None:
    have = write_model_file(tmp_path / "incoming" / "have.safetensors", 1 * MIB, seed=1)
    shelf.import_model(have, "upscale_models", ImportMode.COPY, name="x4/have.safetensors")
    prompt = {
        "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "renamed.pth"}},
        "2": {"class_type": "SomePack Upscaler", "inputs": {"upscaler_name": "pack.safetensors"}},
        "3": {"class_type": "LoraLoader", "inputs": {"lora_name": "bad-url.safetensors"}},
        "model-shelf-1": {"class_type": "VAELoader", "inputs": {"vae_name": "gone.safetensors"}},
    }
    models = [
        # described by a hash the library has under another name: no download at all
        {
            "name": "renamed.pth",
            "url": "https://h/renamed.pth",
            "directory": "upscale_models",
            "hash": sha256_of(have),
        },
        {"name": "pack.safetensors", "url": "https://h/pack", "directory": "upscale_models"},
        {"name": "bad-url.safetensors", "url": "ftp://h/bad", "directory": "loras"},
    ]
    body = body_with(prompt, models)
    made = execute(plan(body, shelf, LibraryResolver(shelf)), shelf)
    by_node = {p.input.node_id: p for p in made.inputs}
    assert by_node["1"].availability is Availability.RESOLVED
    assert by_node["1"].name == "x4/have.safetensors"
    assert by_node["2"].availability is Availability.FETCH
    assert by_node["3"].availability is Availability.UNAVAILABLE
    assert "cannot be fetched from ftp://h/bad" in (by_node["3"].reason or "")
    assert "INVALID_SOURCE" in (by_node["3"].reason or "")
    [task] = shelf.downloads.list()
    assert task.source == "https://h/pack" and task.model_type == "upscale_models"
    assert task.name == "pack.safetensors"

    out = rewrite(body, made, "Await")
    assert body["prompt"] == prompt  # the given body is left alone
    result = out["prompt"]
    assert result["1"]["inputs"]["model_name"] == "x4/have.safetensors"
    waiting = result[result["2"]["inputs"]["upscaler_name"][0]]
    assert waiting["class_type"] == "Await"
    assert waiting["inputs"] == {
        "task_id": task.id,
        "model_type": "upscale_models",
        "model": "pack.safetensors",
        "for_node": "2",
        "error": "",
        "loader": "SomePack Upscaler (node 2)",  # named by a failed download's error
    }
    failing = result[result["3"]["inputs"]["lora_name"][0]]
    # The failing node names the user's loader (its title, else its class) and the model.
    assert failing["inputs"]["error"].startswith(
        "LoraLoader (node 3): Model 'bad-url.safetensors' (loras)"
    )
    gone = result[result["model-shelf-1"]["inputs"]["vae_name"][0]]
    assert "nowhere to get it" in gone["inputs"]["error"]
    injected = [k for k, v in result.items() if v["class_type"] == "Await"]
    assert len(injected) == 3 and "model-shelf-1" not in injected  # ids never collide
    assert out["extra_data"] is body["extra_data"]

    bare = rewrite(prompt, made, "Await")  # a bare API prompt comes back bare
    assert set(bare) == set(result)
