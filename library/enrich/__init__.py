"""Know every model (issue #12): metadata, previews and trust from Civitai and Hugging Face, by
hash. `Enricher` runs a lookup; `EnrichWorker` keeps running them in the background."""

from .enricher import Enricher, EnrichReport, EnrichWorker

__all__ = ["EnrichReport", "EnrichWorker", "Enricher"]
