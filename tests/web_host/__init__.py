"""A stand-in for the ComfyUI page, to run the sidebar in a real browser (see `host`)."""
