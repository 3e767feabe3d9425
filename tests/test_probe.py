"""Tests for library/probe.py: real files in tmp_path; no weight is loaded, nothing unpickled."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from model_shelf.library import Shelf, probe
from model_shelf.library.errors import CorruptModelError, NotAModelError, SourceNotFoundError
from model_shelf.library.probe import (
    PickleVerdict,
    ProbeResult,
    probe_file,
    probe_files,
    probe_path,
)

# numpy dtype -> the name safetensors writes in the header
_ST_DTYPE = {
    np.dtype(np.float16): "F16",
    np.dtype(np.float32): "F32",
    np.dtype(np.float64): "F64",
    np.dtype(np.int8): "I8",
    np.dtype(np.int64): "I64",
    np.dtype(np.bool_): "BOOL",
}


def _arrays(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    return {key: np.zeros(shape, dtype=np.float16) for key, shape in shapes.items()}


def _save(
    path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(path), metadata=metadata)
    return path


def _write_raw(path: Path, header: dict, data: bytes) -> Path:
    """A safetensors file written by hand, for dtypes numpy lacks and for broken headers."""
    header_bytes = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(header_bytes)) + header_bytes + data)
    return path


# --- architecture and kind ----------------------------------------------------------------------

_KOHYA_ATTN2_K = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
_CLIP_LAYER = "text_model.encoder.layers.{}.mlp.fc1.weight"

_CLASSIFY_CASES: dict[str, tuple[dict[str, tuple[int, ...]], str | None, str | None]] = {
    "sd1 checkpoint": (
        {
            "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (
                320,
                768,
            ),
            "first_stage_model.decoder.conv_in.weight": (4, 4, 3, 3),
            "cond_stage_model.transformer.text_model.encoder.layers.0.mlp.fc1.weight": (2, 2),
        },
        "sd1",
        "checkpoint",
    ),
    "sd2 checkpoint": (
        {
            "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3),
            "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (
                4,
                1024,
            ),
            "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight": (2, 2),
        },
        "sd2",
        "checkpoint",
    ),
    "sdxl checkpoint": (
        {
            "model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3),
            "model.diffusion_model.label_emb.0.0.weight": (4, 8),
            "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": (
                4,
                2048,
            ),
            "first_stage_model.decoder.conv_in.weight": (4, 4, 3, 3),
            "conditioner.embedders.0.transformer.text_model.embeddings.position_ids": (1, 4),
            "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight": (2, 2),
        },
        "sdxl",
        "checkpoint",
    ),
    "bare sd1 unet": (
        {
            "input_blocks.0.0.weight": (4, 4, 3, 3),
            "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (4, 768),
        },
        "sd1",
        "diffusion_model",
    ),
    "flux diffusion model": (
        {
            "double_blocks.0.img_attn.qkv.weight": (6, 2),
            "double_blocks.0.img_attn.norm.key_norm.scale": (2,),
            "single_blocks.0.linear1.weight": (4, 2),
            "img_in.weight": (2, 64),
        },
        "flux",
        "diffusion_model",
    ),
    "flux diffusion model with prefix": (
        {
            "model.diffusion_model.double_blocks.0.img_attn.qkv.weight": (6, 2),
            "model.diffusion_model.single_blocks.0.linear1.weight": (4, 2),
        },
        "flux",
        "diffusion_model",
    ),
    "flux full checkpoint": (
        {
            "model.diffusion_model.double_blocks.0.img_attn.qkv.weight": (6, 2),
            "model.diffusion_model.single_blocks.0.linear1.weight": (4, 2),
            "vae.decoder.conv_in.weight": (4, 16, 3, 3),
            "text_encoders.clip_l.transformer.text_model.final_layer_norm.weight": (2,),
        },
        "flux",
        "checkpoint",
    ),
    "sd3 diffusion model": (
        {"joint_blocks.0.context_block.attn.qkv.weight": (6, 2), "x_embedder.proj.weight": (2,)},
        "sd3",
        "diffusion_model",
    ),
    "wan diffusion model": (
        {
            "blocks.0.self_attn.q.weight": (2, 2),
            "blocks.0.cross_attn.k.weight": (2, 2),
            "patch_embedding.weight": (2, 16, 1, 2, 2),
            "text_embedding.0.weight": (2, 4),
            "head.modulation": (1, 2, 2),
        },
        "wan",
        "diffusion_model",
    ),
    "hunyuan video": (
        {
            "double_blocks.0.img_attn.qkv.weight": (6, 2),
            "single_blocks.0.linear1.weight": (4, 2),
            "txt_in.individual_token_refiner.blocks.0.norm1.weight": (2,),
        },
        "hunyuan_video",
        "diffusion_model",
    ),
    "ltxv": (
        {
            "transformer_blocks.0.attn2.to_k.weight": (4, 8),
            "adaln_single.emb.timestep_embedder.linear_1.bias": (2,),
            "scale_shift_table": (2, 2),
        },
        "ltxv",
        "diffusion_model",
    ),
    "kohya sd1 lora": (
        {
            f"{_KOHYA_ATTN2_K}.lora_down.weight": (4, 768),
            f"{_KOHYA_ATTN2_K}.lora_up.weight": (320, 4),
            f"{_KOHYA_ATTN2_K}.alpha": (),
            "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768),
        },
        "sd1",
        "lora",
    ),
    "kohya sdxl lora": (
        {
            "lora_unet_input_blocks_4_1_proj_in.lora_down.weight": (4, 8),
            "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 8),
            "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 8),
        },
        "sdxl",
        "lora",
    ),
    "kohya flux lora": (
        {
            "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (4, 8),
            "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": (8, 4),
            "lora_unet_double_blocks_0_img_attn_qkv.alpha": (),
        },
        "flux",
        "lora",
    ),
    "peft flux lora": (
        {
            "transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight": (4, 8),
            "transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight": (8, 4),
        },
        "flux",
        "lora",
    ),
    "peft sdxl lora": (
        {
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (
                4,
                2048,
            ),
            "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": (
                640,
                4,
            ),
        },
        "sdxl",
        "lora",
    ),
    "comfy wan lora": (
        {
            "diffusion_model.blocks.0.self_attn.q.lora_A.weight": (4, 8),
            "diffusion_model.blocks.0.self_attn.q.lora_B.weight": (8, 4),
        },
        "wan",
        "lora",
    ),
    "sd1 vae": (
        {
            "encoder.down.0.block.0.conv1.weight": (2, 2, 3, 3),
            "decoder.conv_in.weight": (8, 4, 3, 3),
        },
        "sd1",
        "vae",
    ),
    "16-channel vae": (
        {
            "encoder.down.0.block.0.conv1.weight": (2, 2, 3, 3),
            "decoder.conv_in.weight": (8, 16, 3, 3),
        },
        "flux",
        "vae",
    ),
    "wan vae": (
        {"encoder.downsamples.0.residual.0.gamma": (2,), "decoder.upsamples.0.x": (2,)},
        "wan",
        "vae",
    ),
    "t5 text encoder": (
        {
            "encoder.block.0.layer.0.SelfAttention.q.weight": (2, 2),
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": (2, 2),
            "encoder.block.1.layer.0.SelfAttention.q.weight": (2, 2),
            "shared.weight": (4, 2),
        },
        "t5",
        "text_encoder",
    ),
    "umt5 text encoder": (
        {
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": (2, 2),
            "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight": (2, 2),
        },
        "umt5",
        "text_encoder",
    ),
    "clip-l text encoder": (
        {
            **{_CLIP_LAYER.format(i): (2, 2) for i in range(12)},
            "text_model.final_layer_norm.weight": (2,),
        },
        "clip_l",
        "text_encoder",
    ),
    "clip-g text encoder": (
        {_CLIP_LAYER.format(i): (2, 2) for i in range(32)},
        "clip_g",
        "text_encoder",
    ),
    "qwen llm encoder": (
        {
            "model.layers.0.self_attn.k_proj.bias": (2,),
            "model.layers.0.self_attn.q_proj.weight": (2, 2),
        },
        "qwen",
        "text_encoder",
    ),
    "sd1 controlnet": (
        {
            "control_model.input_hint_block.0.weight": (2, 3, 3, 3),
            "control_model.input_blocks.0.0.weight": (4, 4, 3, 3),
            "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (4, 768),
        },
        "sd1",
        "controlnet",
    ),
    "clip vision": (
        {"vision_model.encoder.layers.0.mlp.fc1.weight": (2, 2)},
        None,
        "clip_vision",
    ),
    "esrgan upscaler": (
        {"conv_first.weight": (2, 3, 3, 3), "body.0.rdb1.conv1.weight": (2, 2, 3, 3)},
        None,
        "upscaler",
    ),
    "sdxl embedding": ({"clip_l": (2, 768), "clip_g": (2, 1280)}, "sdxl", "embedding"),
    "sd1 embedding": ({"emb_params": (2, 768)}, "sd1", "embedding"),
    "unknown": ({"foo.weight": (2, 2), "bar.bias": (2,)}, None, None),
}


@pytest.mark.parametrize("case", list(_CLASSIFY_CASES))
def test_architecture_and_kind_from_key_names(tmp_path: Path, case: str) -> None:
    shapes, architecture, kind = _CLASSIFY_CASES[case]
    path = _save(tmp_path / "model.safetensors", _arrays(shapes))

    result = probe_file(path)

    assert (result.architecture, result.kind) == (architecture, kind)
    assert result.format == "safetensors"
    assert result.pickle_verdict is None


# --- counts, dtypes, metadata -------------------------------------------------------------------


def test_counts_and_dtypes_match_what_was_written(tmp_path: Path) -> None:
    arrays = {
        "a.weight": np.zeros((3, 5), dtype=np.float16),
        "b.weight": np.zeros((7,), dtype=np.float32),
        "c.weight": np.zeros((2, 3, 4), dtype=np.float16),
        "d.index": np.zeros((6,), dtype=np.int64),
        "e.mask": np.zeros((0, 4), dtype=np.bool_),
        "f.scale": np.zeros((), dtype=np.float64),
    }
    path = _save(tmp_path / "mixed.safetensors", arrays)

    result = probe_file(path)

    assert result.tensor_count == len(arrays)
    assert result.parameter_count == sum(a.size for a in arrays.values())
    assert result.dtypes == dict(Counter(_ST_DTYPE[a.dtype] for a in arrays.values()))


def test_dtypes_numpy_cannot_write_are_counted_by_header_name(tmp_path: Path) -> None:
    # BF16: 2 bytes per element; F8_E4M3: 1 byte per element.
    header = {
        "x": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
        "y": {"dtype": "F8_E4M3", "shape": [5], "data_offsets": [12, 17]},
        "z": {"dtype": "BF16", "shape": [4], "data_offsets": [17, 25]},
    }
    path = _write_raw(tmp_path / "odd.safetensors", header, bytes(25))

    result = probe_file(path)

    assert result.dtypes == {"BF16": 2, "F8_E4M3": 1}
    assert result.parameter_count == 2 * 3 + 5 + 4


def test_metadata_is_kept_and_capped(tmp_path: Path) -> None:
    metadata = {f"key{i:03d}": "v" * (i * 30) for i in range(150)}
    path = _save(tmp_path / "meta.safetensors", _arrays({"w": (2,)}), metadata=metadata)

    result = probe_file(path)

    assert len(result.metadata) == probe.MAX_METADATA_KEYS
    assert result.metadata["key001"] == metadata["key001"]
    assert all(len(v) <= probe.MAX_METADATA_VALUE_CHARS for v in result.metadata.values())
    assert result.metadata["key099"] == "v" * probe.MAX_METADATA_VALUE_CHARS


def test_result_round_trips_through_json(tmp_path: Path) -> None:
    path = _save(tmp_path / "m.safetensors", _arrays({"w": (2, 2)}), metadata={"a": "b"})
    result = probe_file(path)

    assert ProbeResult.model_validate_json(result.model_dump_json()) == result


def test_only_the_header_is_read_of_a_large_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_bytes = 64 * 1024 * 1024
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [data_bytes], "data_offsets": [0, data_bytes]}}
    )
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode())
        f.truncate(8 + len(header) + data_bytes)  # sparse: no data is ever written
    bytes_read = 0

    class CountingFile:
        def __init__(self, raw):
            self._raw = raw

        def read(self, size: int = -1) -> bytes:
            nonlocal bytes_read
            chunk = self._raw.read(size)
            bytes_read += len(chunk)
            return chunk

        def __getattr__(self, name):
            return getattr(self._raw, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._raw.close()

    def counting_open(file: Path, mode: str) -> CountingFile:
        return CountingFile(open(file, mode))  # closed by CountingFile.__exit__

    monkeypatch.setattr(probe, "open", counting_open, raising=False)

    result = probe_file(path)

    assert result.parameter_count == data_bytes
    assert 0 < bytes_read < 64 * 1024


# --- several files and folders ------------------------------------------------------------------


def test_sharded_set_sums_counts_and_classifies_the_union(tmp_path: Path) -> None:
    # Flux needs both double and single blocks; each shard alone has only one of them.
    shard1 = {"double_blocks.0.img_attn.qkv.weight": np.zeros((6, 4), dtype=np.float16)}
    shard2 = {
        "single_blocks.0.linear1.weight": np.zeros((4, 4), dtype=np.float32),
        "final_layer.linear.weight": np.zeros((3,), dtype=np.float32),
    }
    paths = [
        _save(tmp_path / "model-00001-of-00002.safetensors", shard1),
        _save(tmp_path / "model-00002-of-00002.safetensors", shard2),
    ]
    every = {**shard1, **shard2}

    result = probe_files(paths)

    assert result.tensor_count == len(every)
    assert result.parameter_count == sum(a.size for a in every.values())
    assert result.dtypes == dict(Counter(_ST_DTYPE[a.dtype] for a in every.values()))
    assert (result.architecture, result.kind) == ("flux", "diffusion_model")
    assert probe_file(paths[0]).architecture is None
    assert probe_path(tmp_path) == result


def test_probe_files_needs_files() -> None:
    with pytest.raises(NotAModelError):
        probe_files([])


def test_diffusers_folder_is_a_checkpoint_named_by_its_pipeline(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline"})
    )
    unet = _arrays({"down_blocks.0.resnets.0.conv1.weight": (4, 4, 3, 3)})
    vae = _arrays({"decoder.conv_in.weight": (8, 4, 3, 3), "encoder.conv_in.weight": (8, 3, 3, 3)})
    _save(tmp_path / "unet" / "diffusion_pytorch_model.safetensors", unet)
    _save(tmp_path / "vae" / "diffusion_pytorch_model.safetensors", vae)
    _save(tmp_path / ".cache" / "stray.safetensors", _arrays({"x": (100,)}))

    result = probe_path(tmp_path)

    assert (result.architecture, result.kind) == ("sdxl", "checkpoint")
    assert result.parameter_count == sum(a.size for a in [*unet.values(), *vae.values()])


def test_diffusers_sd2_told_apart_by_unet_config(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline"})
    )
    _save(tmp_path / "unet" / "diffusion_pytorch_model.safetensors", _arrays({"w": (2,)}))
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 1024}))

    assert probe_path(tmp_path).architecture == "sd2"


def test_folder_counts_safetensors_but_still_scans_pickles(tmp_path: Path) -> None:
    arrays = _arrays(
        {"encoder.conv_in.weight": (2, 3, 3, 3), "decoder.conv_in.weight": (8, 4, 3, 3)}
    )
    _save(tmp_path / "diffusion_pytorch_model.safetensors", arrays)
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(_Evil()))

    result = probe_path(tmp_path)

    assert result.format == "safetensors"
    assert result.parameter_count == sum(a.size for a in arrays.values())
    assert result.pickle_verdict is PickleVerdict.DANGEROUS


def test_folder_without_weights_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(NotAModelError):
        probe_path(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFoundError):
        probe_path(tmp_path / "nope.safetensors")


def test_unknown_extension_is_other(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_bytes(b"whatever")
    assert probe_file(path) == ProbeResult(format="other")


# --- corrupt safetensors ------------------------------------------------------------------------


@pytest.fixture
def valid_bytes(tmp_path: Path) -> bytes:
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, dtype=np.float16)}
    return _save(tmp_path / "valid.safetensors", arrays, metadata={"k": "v"}).read_bytes()


def _header_length(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


_CORRUPTIONS = {
    "truncated by one byte": (lambda d: d[:-1], "truncated"),
    "truncated to five bytes": (lambda d: d[:5], "only 5 bytes"),
    "truncated inside the header": (lambda d: d[: 8 + _header_length(d) // 2], "inside the header"),
    "length field beyond the file": (
        lambda d: struct.pack("<Q", len(d)) + d[8:],
        "inside the header",
    ),
    "length field absurd": (lambda d: struct.pack("<Q", 2**62) + d[8:], "limit"),
    "invalid json": (
        lambda d: d[:8] + b"{not json" + d[17 : 8 + _header_length(d)] + d[8 + _header_length(d) :],
        "not valid JSON",
    ),
    "trailing bytes": (lambda d: d + b"\0\0\0", "unexpected bytes"),
    "a zip under a safetensors name": (lambda d: b"PK\x03\x04" + d[4:], "zip"),
}


@pytest.mark.parametrize("case", list(_CORRUPTIONS))
def test_corrupt_safetensors_raise_corrupt_model_error(
    tmp_path: Path, valid_bytes: bytes, case: str
) -> None:
    mutate, reason = _CORRUPTIONS[case]
    path = tmp_path / "broken.safetensors"
    path.write_bytes(mutate(valid_bytes))

    with pytest.raises(CorruptModelError) as caught:
        probe_file(path)

    assert caught.value.code == "CORRUPT_FILE"
    assert caught.value.path == str(path)
    assert path.name in str(caught.value)
    assert reason in str(caught.value)


def test_data_offsets_past_the_end_give_exact_byte_counts(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    path = _write_raw(tmp_path / "short.safetensors", header, bytes(10))
    header_length = len(json.dumps(header).encode())

    with pytest.raises(CorruptModelError) as caught:
        probe_file(path)

    message = str(caught.value)
    assert f"ends at byte {8 + header_length + 16:,}" in message
    assert f"the file has {path.stat().st_size:,} bytes" in message
    assert path.name in message


def test_inconsistent_tensor_size_is_corrupt(tmp_path: Path) -> None:
    header = {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}
    path = _write_raw(tmp_path / "odd.safetensors", header, bytes(12))

    with pytest.raises(CorruptModelError, match="needs 16 bytes"):
        probe_file(path)


@settings(
    max_examples=200,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_arbitrary_bytes_only_ever_raise_corrupt_model_error(
    tmp_path: Path, valid_bytes: bytes, data: st.DataObject
) -> None:
    content = data.draw(
        st.one_of(
            st.binary(max_size=300),
            st.integers(0, len(valid_bytes)).map(lambda n: valid_bytes[:n]),
            st.tuples(st.integers(0, len(valid_bytes) - 1), st.integers(0, 255)).map(
                lambda p: valid_bytes[: p[0]] + bytes([p[1]]) + valid_bytes[p[0] + 1 :]
            ),
            st.binary(max_size=200).map(lambda b: struct.pack("<Q", len(b)) + b),
        )
    )
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(content)

    try:
        result = probe_file(path)
    except CorruptModelError as exc:
        assert path.name in str(exc)
    else:
        assert result.format == "safetensors"


# --- pickle -------------------------------------------------------------------------------------


class _Evil:
    """Pickles to a call of os.system; only ever dumped, never loaded."""

    def __reduce__(self):
        return (os.system, ("echo hi",))


_BENIGN = {"weights": [[1.0, 2.0], [3.0, 4.0]], "step": [100]}
_SYSTEM_GLOBALS = {"os.system", "posix.system", "nt.system"}


def _torch_zip(path: Path, payload: bytes) -> Path:
    """The layout torch.save writes: a zip whose pickle is archive/data.pkl."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/data/0", bytes(16))
    return path


def test_dangerous_pickle_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps(_Evil()))

    result = probe_file(path)

    assert result.format == "pickle"
    assert result.pickle_verdict is PickleVerdict.DANGEROUS
    assert _SYSTEM_GLOBALS & set(result.pickle_globals)


def test_benign_pickle_is_safe(tmp_path: Path) -> None:
    path = tmp_path / "fine.pt"
    path.write_bytes(pickle.dumps(_BENIGN))

    result = probe_file(path)

    assert (result.format, result.pickle_verdict) == ("pickle", PickleVerdict.SAFE)
    assert result.pickle_globals == []
    assert result.tensor_count is None


def test_dangerous_pickle_inside_a_torch_zip_is_flagged(tmp_path: Path) -> None:
    path = _torch_zip(tmp_path / "evil.pth", pickle.dumps(_Evil()))

    result = probe_file(path)

    assert result.pickle_verdict is PickleVerdict.DANGEROUS
    assert _SYSTEM_GLOBALS & set(result.pickle_globals)


def test_benign_torch_zip_is_safe(tmp_path: Path) -> None:
    path = _torch_zip(tmp_path / "fine.bin", pickle.dumps(_BENIGN))
    assert probe_file(path).pickle_verdict is PickleVerdict.SAFE


def test_zip_without_a_pickle_is_unscanned(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/readme.txt", "no pickle here")

    result = probe_file(path)

    assert result.pickle_verdict is PickleVerdict.UNSCANNED
    assert result.error


def test_picklescan_crash_is_recorded_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(path: str, strict: bool = False):
        raise RuntimeError("scanner fell over")

    monkeypatch.setattr(probe, "scan_file_path", explode)
    path = tmp_path / "any.ckpt"
    path.write_bytes(pickle.dumps(_BENIGN))

    result = probe_file(path)

    assert result.pickle_verdict is PickleVerdict.ERROR
    assert "scanner fell over" in (result.error or "")


def test_worst_verdict_wins_across_files(tmp_path: Path) -> None:
    good = tmp_path / "a.bin"
    good.write_bytes(pickle.dumps(_BENIGN))
    bad = _torch_zip(tmp_path / "b.bin", pickle.dumps(_Evil()))

    result = probe_files([good, bad])

    assert result.pickle_verdict is PickleVerdict.DANGEROUS


# --- gguf ---------------------------------------------------------------------------------------


def _gguf(
    path: Path, magic: bytes = b"GGUF", tensors: int = 2, kvs: int = 1, pad: int = 200
) -> Path:
    path.write_bytes(magic + struct.pack("<IQQ", 3, tensors, kvs) + bytes(pad))
    return path


def test_gguf_header_is_read(tmp_path: Path) -> None:
    result = probe_file(_gguf(tmp_path / "model.gguf"))
    assert (result.format, result.tensor_count) == ("gguf", 2)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: _gguf(p, magic=b"GGML"), "magic"),
        (lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00\x02"), "truncated"),
        (lambda p: _gguf(p, tensors=10**12), "can hold"),
    ],
    ids=["wrong magic", "truncated", "impossible count"],
)
def test_bad_gguf_is_corrupt(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "model.gguf"
    make(path)

    with pytest.raises(CorruptModelError, match=reason) as caught:
        probe_file(path)

    assert path.name in str(caught.value)


def _raw_safetensors(path: Path, header: dict[str, object]) -> Path:
    raw = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


@pytest.mark.parametrize("too_large", ["tensors", "bytes"])
def test_a_legal_header_too_large_to_inspect_is_said_so_and_still_imports(
    tmp_path: Path, too_large: str
) -> None:
    """A million tensors cost 1.7 GB and 13 s to parse (issue 15): past the caps the probe
    reads nothing more, says why, and the file is imported all the same."""
    if too_large == "tensors":
        header: dict[str, object] = {
            f"t{i}": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]}
            for i in range(probe.MAX_INSPECT_TENSORS + 1)
        }
    else:
        header = {
            "__metadata__": {"notes": "x" * (probe.MAX_INSPECT_HEADER_BYTES + 1)},
            "t": {"dtype": "F16", "shape": [0], "data_offsets": [0, 0]},
        }
    path = _raw_safetensors(tmp_path / "huge.safetensors", header)
    result = probe.probe_file(path)
    assert result.format == "safetensors"
    assert result.error is not None and "too large to inspect" in result.error
    assert result.tensor_count is None
    with Shelf.open(tmp_path / "library") as shelf:
        record = shelf.import_model(path, "loras")
        assert record.probe.error == result.error
