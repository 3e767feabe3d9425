import pytest

from model_shelf.library.errors import UnknownTypeError, UnsafeNameError
from model_shelf.library.layout import Layout, check_type, safe_name


@pytest.mark.parametrize(
    "name",
    [
        "../x.safetensors",
        "a/../../x.safetensors",
        "..\\x.safetensors",
        "/etc/passwd",
        "C:\\x.ckpt",
        "",
    ],
)
def test_names_that_leave_the_folder_are_refused(name):
    with pytest.raises(UnsafeNameError) as info:
        safe_name(name)
    assert info.value.code == "UNSAFE_NAME"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sdxl/base.safetensors", "sdxl/base.safetensors"),
        ('a:b?c*"d<e>|.safetensors', "a_b_c__d_e__.safetensors"),
        ("trailing. ", "trailing"),
        ("CON.safetensors", "CON_.safetensors"),
        ("NUL.safetensors", "NUL_.safetensors"),
        ("sub/lpt1", "sub/lpt1_"),
        ("com9.tar.gguf", "com9_.tar.gguf"),
        ("evil\u202egpj.safetensors", "evilgpj.safetensors"),
        ("\u2066a\u2069\u200fb.safetensors", "ab.safetensors"),
        ("sub\\dir\\m.ckpt", "sub/dir/m.ckpt"),
        ("./x.pt", "x.pt"),
    ],
)
def test_names_are_made_safe_for_ntfs_and_exfat(name, expected):
    assert safe_name(name) == expected


@pytest.mark.parametrize("name", ["x.safetensors.shelf.json", ".shelf/x", "a.shelf-tmp"])
def test_our_own_file_names_are_reserved(name):
    with pytest.raises(UnsafeNameError):
        safe_name(name)


def test_types_follow_comfyui_including_legacy_names():
    assert check_type("checkpoints") == "checkpoints"
    assert check_type("clip") == "text_encoders"
    assert check_type("unet") == "diffusion_models"
    with pytest.raises(UnknownTypeError, match="unknown model type 'pictures'"):
        check_type("pictures")


def test_split_refuses_paths_outside_type_folders(tmp_path):
    layout = Layout(tmp_path)
    assert layout.split(tmp_path / "loras" / "sd" / "x.safetensors") == (
        "loras",
        "sd/x.safetensors",
    )
    with pytest.raises(UnsafeNameError):
        layout.split(tmp_path.parent / "elsewhere.safetensors")
    with pytest.raises(UnsafeNameError):
        layout.split(tmp_path / ".shelf" / "index.db")
