"""Stand-in for ComfyUI's ``folder_paths`` module, written for our tests (not ComfyUI's code).

Mirrors ComfyUI 0.3.64 (commit 637221995f7424a561bd825de3e61ea117dfe1e3; ``folder_paths.py``
unchanged since e633a47a, Aug 2025): the same public names, signatures and behaviour, and the
same filesystem calls in the same order, so timings in ``bench/`` compare like with like:

- ``folder_names_and_paths[type] = ([folders], extensions)`` with the same default folders;
  ``add_model_folder_path`` appends (``is_default`` inserts first or moves to the front) and
  creates an unknown type with an empty extension set; legacy ``unet``/``clip`` are mapped.
- ``get_filename_list`` keeps ``filename_list_cache[type] = (names, {folder: mtime}, time)``.
  A cached entry is reused while every recorded folder keeps its mtime and no listed folder that
  exists is missing from it. Trap kept on purpose: when a recorded folder has vanished,
  ``os.path.getmtime`` raises ``FileNotFoundError`` out of ``get_filename_list`` until the
  cache entry is dropped. ``cache_helper`` (a strong cache active inside ``with``) is the same.
- ``recursive_search`` walks with ``os.walk(followlinks=True)`` and ``os.path.relpath`` per file;
  a folder that does not exist gives ``([], {})``.
- ``get_full_path`` normalises the name through ``relpath(join("/", name), "/")`` and returns
  the first folder holding it as a file; ``get_full_path_or_raise`` looks ``get_full_path`` up
  on the module at call time, so a wrapper installed on the module is used by it too.

Only what our code and tests touch is here (no image-path helpers). The base folder comes from
``COMFY_STAND_IN_BASE`` (the real module uses ``--base-directory`` or its own folder).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection

supported_pt_extensions: set[str] = {
    ".ckpt",
    ".pt",
    ".pt2",
    ".bin",
    ".pth",
    ".safetensors",
    ".pkl",
    ".sft",
}

folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}

base_path = os.path.abspath(os.environ.get("COMFY_STAND_IN_BASE") or os.getcwd())
models_dir = os.path.join(base_path, "models")


def _model_dirs(*names: str) -> list[str]:
    return [os.path.join(models_dir, name) for name in names]


# Same order and folders as 0.3.64.
folder_names_and_paths["checkpoints"] = (_model_dirs("checkpoints"), supported_pt_extensions)
folder_names_and_paths["configs"] = (_model_dirs("configs"), [".yaml"])  # a list there too
folder_names_and_paths["loras"] = (_model_dirs("loras"), supported_pt_extensions)
folder_names_and_paths["vae"] = (_model_dirs("vae"), supported_pt_extensions)
folder_names_and_paths["text_encoders"] = (
    _model_dirs("text_encoders", "clip"),
    supported_pt_extensions,
)
folder_names_and_paths["diffusion_models"] = (
    _model_dirs("unet", "diffusion_models"),
    supported_pt_extensions,
)
folder_names_and_paths["clip_vision"] = (_model_dirs("clip_vision"), supported_pt_extensions)
folder_names_and_paths["style_models"] = (_model_dirs("style_models"), supported_pt_extensions)
folder_names_and_paths["embeddings"] = (_model_dirs("embeddings"), supported_pt_extensions)
folder_names_and_paths["diffusers"] = (_model_dirs("diffusers"), ["folder"])
folder_names_and_paths["vae_approx"] = (_model_dirs("vae_approx"), supported_pt_extensions)
folder_names_and_paths["controlnet"] = (
    _model_dirs("controlnet", "t2i_adapter"),
    supported_pt_extensions,
)
folder_names_and_paths["gligen"] = (_model_dirs("gligen"), supported_pt_extensions)
folder_names_and_paths["upscale_models"] = (_model_dirs("upscale_models"), supported_pt_extensions)
folder_names_and_paths["custom_nodes"] = ([os.path.join(base_path, "custom_nodes")], set())
folder_names_and_paths["hypernetworks"] = (_model_dirs("hypernetworks"), supported_pt_extensions)
folder_names_and_paths["photomaker"] = (_model_dirs("photomaker"), supported_pt_extensions)
folder_names_and_paths["classifiers"] = (_model_dirs("classifiers"), {""})
folder_names_and_paths["model_patches"] = (_model_dirs("model_patches"), supported_pt_extensions)
folder_names_and_paths["audio_encoders"] = (_model_dirs("audio_encoders"), supported_pt_extensions)

output_directory = os.path.join(base_path, "output")
temp_directory = os.path.join(base_path, "temp")
input_directory = os.path.join(base_path, "input")
user_directory = os.path.join(base_path, "user")

filename_list_cache: dict[str, tuple[list[str], dict[str, float], float]] = {}


class CacheHelper:
    """A strong cache of listings, consulted only inside ``with cache_helper:`` (object_info)."""

    def __init__(self) -> None:
        self.cache: dict[str, tuple[list[str], dict[str, float], float]] = {}
        self.active = False

    def get(self, key: str, default=None):
        return self.cache.get(key, default) if self.active else default

    def set(self, key: str, value: tuple[list[str], dict[str, float], float]) -> None:
        if self.active:
            self.cache[key] = value

    def clear(self) -> None:
        self.cache.clear()

    def __enter__(self) -> CacheHelper:
        self.active = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.active = False
        self.clear()


cache_helper = CacheHelper()


def map_legacy(folder_name: str) -> str:
    return {"unet": "diffusion_models", "clip": "text_encoders"}.get(folder_name, folder_name)


if not os.path.exists(input_directory):
    os.makedirs(input_directory, exist_ok=True)


def get_input_directory() -> str:
    return input_directory


def get_output_directory() -> str:
    return output_directory


def get_user_directory() -> str:
    return user_directory


def set_user_directory(user_dir: str) -> None:
    global user_directory
    user_directory = user_dir


def add_model_folder_path(
    folder_name: str, full_folder_path: str, is_default: bool = False
) -> None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        folder_names_and_paths[folder_name] = ([full_folder_path], set())
        return
    paths = folder_names_and_paths[folder_name][0]
    if full_folder_path not in paths:
        if is_default:
            paths.insert(0, full_folder_path)
        else:
            paths.append(full_folder_path)
    elif is_default and paths[0] != full_folder_path:
        paths.remove(full_folder_path)
        paths.insert(0, full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def recursive_search(
    directory: str, excluded_dir_names: list[str] | None = None
) -> tuple[list[str], dict[str, float]]:
    if not os.path.isdir(directory):
        return [], {}
    excluded = excluded_dir_names or []
    found: list[str] = []
    folder_mtimes: dict[str, float] = {}
    try:
        folder_mtimes[directory] = os.path.getmtime(directory)
    except FileNotFoundError:
        logging.warning("Warning: Unable to access %s. Skipping this path.", directory)
    for dirpath, subdirs, filenames in os.walk(directory, followlinks=True, topdown=True):
        subdirs[:] = [d for d in subdirs if d not in excluded]
        for file_name in filenames:
            try:
                found.append(os.path.relpath(os.path.join(dirpath, file_name), directory))
            except ValueError:
                logging.warning("Warning: Unable to access %s. Skipping this file.", file_name)
        for subdir in subdirs:
            path = os.path.join(dirpath, subdir)
            try:
                folder_mtimes[path] = os.path.getmtime(path)
            except FileNotFoundError:
                logging.warning("Warning: Unable to access %s. Skipping this path.", path)
    return found, folder_mtimes


def filter_files_extensions(files: Collection[str], extensions: Collection[str]) -> list[str]:
    return sorted(
        f for f in files if len(extensions) == 0 or os.path.splitext(f)[-1].lower() in extensions
    )


def get_full_path(folder_name: str, filename: str) -> str | None:
    folder_name = map_legacy(folder_name)
    if folder_name not in folder_names_and_paths:
        return None
    filename = os.path.relpath(os.path.join("/", filename), "/")
    for folder in folder_names_and_paths[folder_name][0]:
        full_path = os.path.join(folder, filename)
        if os.path.isfile(full_path):
            return full_path
        if os.path.islink(full_path):
            logging.warning(
                "WARNING path %s exists but doesn't link anywhere, skipping.", full_path
            )
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    full_path = get_full_path(folder_name, filename)  # the module's current one, wrappers too
    if full_path is None:
        raise FileNotFoundError(
            f"Model in folder '{folder_name}' with filename '{filename}' not found."
        )
    return full_path


def get_filename_list_(folder_name: str) -> tuple[list[str], dict[str, float], float]:
    folder_name = map_legacy(folder_name)
    folders, extensions = folder_names_and_paths[folder_name]
    names: set[str] = set()
    folder_mtimes: dict[str, float] = {}
    for folder in folders:
        files, mtimes = recursive_search(folder, excluded_dir_names=[".git"])
        names.update(filter_files_extensions(files, extensions))
        folder_mtimes = {**folder_mtimes, **mtimes}
    return sorted(names), folder_mtimes, time.perf_counter()


def cached_filename_list_(folder_name: str) -> tuple[list[str], dict[str, float], float] | None:
    strong = cache_helper.get(folder_name)
    if strong is not None:
        return strong
    folder_name = map_legacy(folder_name)
    if folder_name not in filename_list_cache:
        return None
    cached = filename_list_cache[folder_name]
    for folder, mtime in cached[1].items():
        if os.path.getmtime(folder) != mtime:  # raises FileNotFoundError for a vanished folder
            return None
    for folder in folder_names_and_paths[folder_name][0]:
        if os.path.isdir(folder) and folder not in cached[1]:
            return None
    return cached


def get_filename_list(folder_name: str) -> list[str]:
    folder_name = map_legacy(folder_name)
    out = cached_filename_list_(folder_name)
    if out is None:
        out = get_filename_list_(folder_name)
        filename_list_cache[folder_name] = out
    cache_helper.set(folder_name, out)
    return list(out[0])
