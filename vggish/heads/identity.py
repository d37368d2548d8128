"""What a head is bound to: the SHA-256 of the weights that made its training embeddings. Hop and
pad are recorded, never compared; another resampler is a warning; unknown identities pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, get_args

from vggish.audio.resample import ResamplerName
from vggish.errors import ConflictError, InvalidInputError
from vggish.features.logmel import hop_to_frames
from vggish.weights.location import RANDOM

if TYPE_CHECKING:
    from vggish.network.runtime import Runtime
    from vggish.pipeline.options import EmbedOptions

SHA256_RE = re.compile(r"[0-9a-f]{64}")
SHA256_SHOWN = 12  # hex digits of a weights SHA-256 shown in messages


@dataclass(frozen=True)
class FeatureSpec:
    """How a head's training embeddings were made (None: unknown). Only ``weights_sha256`` (64
    lowercase hex digits, or ``"random"`` for the demo weights) binds a head."""

    weights_sha256: str | None = None
    hop_seconds: float | None = None
    pad: bool | None = None
    resampler: ResamplerName | None = None

    def __post_init__(self) -> None:
        sha = self.weights_sha256
        if sha is not None and (not isinstance(sha, str) or not (sha == RANDOM or SHA256_RE.fullmatch(sha))):
            raise InvalidInputError(
                f"weights_sha256 must be 64 lowercase hex digits or {RANDOM!r}; got {sha!r}"
            )
        hop = self.hop_seconds
        if hop is not None:
            if isinstance(hop, bool) or not isinstance(hop, (int, float)):
                raise InvalidInputError(f"hop_seconds must be a number; got {hop!r}")
            try:
                hop_to_frames(hop)
            except (ValueError, OverflowError) as e:  # float() of a 400-digit integer overflows
                raise InvalidInputError(f"hop_seconds: {e}") from e
            object.__setattr__(self, "hop_seconds", float(hop))
        if self.pad is not None and not isinstance(self.pad, bool):
            raise InvalidInputError(f"pad must be true or false; got {self.pad!r}")
        if self.resampler is not None and self.resampler not in get_args(ResamplerName):
            raise InvalidInputError(
                f"resampler must be one of {get_args(ResamplerName)}; got {self.resampler!r}"
            )

    @classmethod
    def for_model(cls, model: Runtime, options: EmbedOptions) -> FeatureSpec:
        sha = model.weights_info.get("sha256") or None
        return cls(sha, options.hop_seconds, options.pad, options.resampler)

    @classmethod
    def from_dict(cls, raw: object) -> FeatureSpec:
        """Parses :meth:`to_dict`'s mapping (missing keys are unknown)."""
        if not isinstance(raw, Mapping):
            raise InvalidInputError(f"features must be a JSON object; got {type(raw).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in raw if k not in names)
        if unknown:
            raise InvalidInputError(f"features has unknown keys {unknown}; expected some of {sorted(names)}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def unknown(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def describe(self) -> str:
        """One line, e.g. ``weights 3f1c2a9b8d7e, hop 0.96 s, pad off, resampler reference``."""
        sha = self.weights_sha256
        parts = [
            "weights " + ("unknown" if sha is None else sha[:SHA256_SHOWN]),
            "hop " + ("unknown" if self.hop_seconds is None else f"{self.hop_seconds:g} s"),
            "pad " + ("unknown" if self.pad is None else ("on" if self.pad else "off")),
            "resampler " + (self.resampler or "unknown"),
        ]
        return ", ".join(parts)


UNKNOWN_FEATURES = FeatureSpec()


class WeightsMismatchError(ConflictError):
    """A head would be applied to embeddings of other weights than those it was trained on."""

    def __init__(self, message: str, head: FeatureSpec, used: FeatureSpec, differences: list[str]) -> None:
        super().__init__(message)
        self.head = head
        self.used = used
        self.differences = differences


def check_compatible(
    head: FeatureSpec, used: FeatureSpec, force: bool = False, name: str | None = None
) -> str | None:
    """Refuses to apply a head (identity ``head``) to embeddings of other weights (``used``; its
    ``weights_sha256`` None skips the check) with WeightsMismatchError, unless ``force``.

    Returns:
        None, or a warning: the head records no weights, another resampler, or forced weights.
    """
    what = "the head" if name is None else f"head {name!r}"
    mine, theirs = head.weights_sha256, used.weights_sha256
    if mine is not None and theirs is not None and mine != theirs:
        message = (
            f"{what} was trained on embeddings of weights {mine[:SHA256_SHOWN]}, but these are of weights "
            f"{theirs[:SHA256_SHOWN]}, so its scores would mean nothing"
        )
        if not force:
            raise WeightsMismatchError(
                f"{message}; use the weights it was trained with, retrain it, or force it "
                "(force=true; CLI --force)",
                head,
                used,
                ["weights"],
            )
        return f"{message} (forced)"
    if mine is None and theirs is not None:
        return f"{what} does not record its weights: its scores mean nothing on embeddings of other weights"
    if head.resampler is not None and used.resampler is not None and head.resampler != used.resampler:
        return (
            f"{what} was trained on audio resampled by the {head.resampler!r} resampler, these by "
            f"{used.resampler!r}: embeddings of resampled audio differ slightly, and so may its scores"
        )
    return None
