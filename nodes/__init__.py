"""ComfyUI nodes: thin adapters over `Shelf` calls. Importable without ComfyUI."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
