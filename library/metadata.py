"""What a model *is*, learnt from Civitai and Hugging Face by its hash: kept in its record.

`ModelMetadata` is a part of `ModelRecord` (so of the sidecar, the source of truth). Each
source's answer is a `Match` with a `Trust` badge. What a person set by hand sits apart in
`UserMetadata` and always wins (`ModelMetadata.view`): an enrichment never touches it.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field

NOT_FETCHED = "metadata not fetched yet"
"""What every view says about a model nobody has looked up yet (offline, or not yet reached)."""


class Trust(str, Enum):
    """How sure a match is that it describes this very file."""

    VERIFIED = "verified"
    """The source states the file's sha256, and it is ours."""
    LIKELY = "likely"
    """File name and size equal (the source gives no hash, or we have none yet)."""
    GUESS = "guess"
    """Only the file name equals."""


TRUST_ORDER = {Trust.VERIFIED: 0, Trust.LIKELY: 1, Trust.GUESS: 2}


class Licence(BaseModel):
    """Civitai's permissions (on the model), or a Hugging Face repository's licence id."""

    name: str | None = None
    allow_no_credit: bool | None = None
    allow_commercial_use: list[str] = Field(default_factory=list)
    allow_derivatives: bool | None = None
    allow_different_license: bool | None = None


class ImageRef(BaseModel):
    """A preview image the source lists (not downloaded unless chosen as the preview)."""

    url: str
    nsfw_level: int = 0
    width: int | None = None
    height: int | None = None
    type: str = "image"


class NewerVersion(BaseModel):
    """A later version of the same Civitai model than the one this file is."""

    version_id: int
    name: str | None = None
    source: str
    """What `Shelf.add`/the download queue takes: ``civitai:<version id>``."""
    page_url: str | None = None


class Match(BaseModel):
    """One source's answer about a model."""

    source: Literal["civitai", "huggingface"]
    trust: Trust
    fetched_at: datetime
    model_name: str | None = None
    version_name: str | None = None
    base_model: str | None = None
    trained_words: list[str] = Field(default_factory=list)
    page_url: str | None = None
    """The model's web page."""
    source_url: str | None = None
    """A URL another machine can download this file from (workflow ``models[].url``)."""
    model_id: int | None = None
    version_id: int | None = None
    repo_id: str | None = None
    nsfw_level: int | None = None
    """Civitai's bitmask: 1 PG, 2 PG-13, 4 R, 8 X, 16 XXX, 32 blocked."""
    nsfw: bool = False
    licence: Licence | None = None
    tags: list[str] = Field(default_factory=list)
    creator: str | None = None
    images: list[ImageRef] = Field(default_factory=list)
    newer_version: NewerVersion | None = None


class Preview(BaseModel):
    """The preview written beside the model, and its thumbnail (paths relative to the root)."""

    file: str
    thumbnail: str | None = None
    url: str
    nsfw_level: int = 0


class UserMetadata(BaseModel):
    """Values a person set by hand; None means "not set". They win over every match."""

    base_model: str | None = None
    trained_words: list[str] | None = None
    page_url: str | None = None
    source_url: str | None = None


class MetadataView(BaseModel):
    """The metadata as shown: the best match with the user's own values over it."""

    status: Literal["matched", "unknown", "not_fetched"]
    message: str | None = None
    trust: Trust | None = None
    source: str | None = None
    fetched_at: datetime | None = None
    model_name: str | None = None
    version_name: str | None = None
    base_model: str | None = None
    trained_words: list[str] = Field(default_factory=list)
    page_url: str | None = None
    source_url: str | None = None
    nsfw_level: int | None = None
    licence: Licence | None = None
    newer_version: NewerVersion | None = None
    preview: bool = False
    user: UserMetadata = Field(default_factory=UserMetadata)


class ModelMetadata(BaseModel):
    """Everything learnt about a model from outside, plus the user's own values."""

    matches: list[Match] = Field(default_factory=list)
    """Best first (by `Trust`)."""
    checked_at: datetime | None = None
    """When the sources were last asked (found or not); None: never."""
    preview: Preview | None = None
    user: UserMetadata = Field(default_factory=UserMetadata)

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    def view(self) -> MetadataView:
        user = self.user
        best = self.best
        if best is None:
            status: Literal["matched", "unknown", "not_fetched"]
            status = "not_fetched" if self.checked_at is None else "unknown"
            message = NOT_FETCHED if self.checked_at is None else "no source knows this file"
            return MetadataView(
                status=status,
                message=message,
                fetched_at=self.checked_at,
                base_model=user.base_model,
                trained_words=user.trained_words or [],
                page_url=user.page_url,
                source_url=user.source_url,
                preview=self.preview is not None,
                user=user,
            )
        return MetadataView(
            status="matched",
            trust=best.trust,
            source=best.source,
            fetched_at=best.fetched_at,
            model_name=best.model_name,
            version_name=best.version_name,
            base_model=user.base_model if user.base_model is not None else best.base_model,
            trained_words=(
                user.trained_words if user.trained_words is not None else best.trained_words
            ),
            page_url=user.page_url or best.page_url,
            source_url=user.source_url or self.source_url(),
            nsfw_level=best.nsfw_level,
            licence=best.licence,
            newer_version=best.newer_version,
            preview=self.preview is not None,
            user=user,
        )

    def source_url(self) -> str | None:
        """The download URL the enrichment found, from the most trusted match that has one.

        Only verified or likely matches: a name-only guess must not make a workflow fetch a
        different file.
        """
        if self.user.source_url:
            return self.user.source_url
        for match in self.matches:
            if match.source_url and match.trust is not Trust.GUESS:
                return match.source_url
        return None
