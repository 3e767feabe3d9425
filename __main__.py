"""``python -m model_shelf`` (installed with pip), or ``python <this folder>`` from
``custom_nodes/``, where ComfyUI's python cannot import the folder as ``model_shelf``."""

if __package__:
    from .cli import main
else:  # run as a folder: load it as the package it is, under its own name
    import importlib.util
    import sys
    from pathlib import Path

    _here = Path(__file__).resolve().parent
    _spec = importlib.util.spec_from_file_location(
        "model_shelf", _here / "__init__.py", submodule_search_locations=[str(_here)]
    )
    assert _spec is not None and _spec.loader is not None
    _package = importlib.util.module_from_spec(_spec)
    sys.modules["model_shelf"] = _package
    _spec.loader.exec_module(_package)
    from model_shelf.cli import main

raise SystemExit(main())
