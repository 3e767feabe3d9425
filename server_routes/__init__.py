"""HTTP routes under ``/model-shelf/``, mounted on ComfyUI's PromptServer or a standalone app."""
