"""Model versions in a directory: each `<version>.skops` with its card, and ACTIVE naming the one in use."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from classifier.model import PriorityModel

ACTIVE = "ACTIVE"


class UnknownVersion(Exception):
    pass


class ModelRegistry:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_of(self, version: str) -> Path:
        return self.directory / f"{version}.skops"

    def versions(self) -> list[dict[str, Any]]:
        """The model cards, oldest first."""
        cards = []
        for card_path in self.directory.glob("*.json"):
            if card_path.with_suffix(".skops").exists():
                cards.append(json.loads(card_path.read_text(encoding="utf-8")))
        return sorted(cards, key=lambda c: (c.get("trained_at", ""), c.get("version", "")))

    def active_version(self) -> str | None:
        marker = self.directory / ACTIVE
        if not marker.exists():
            return None
        return marker.read_text(encoding="utf-8").strip() or None

    def load(self, version: str | None = None, review_below: float = 0.6) -> PriorityModel:
        chosen = version or self.active_version()
        if chosen is None:
            raise UnknownVersion(f"{self.directory}: no active model (file {ACTIVE} missing)")
        path = self.path_of(chosen)
        if not path.exists():
            raise UnknownVersion(f"{self.directory}: no model version {chosen!r}")
        return PriorityModel.load(path, review_below)

    def activate(self, version: str) -> None:
        """Switch to `version` (also back to an older one); it must load before it is named."""
        self.load(version)
        tmp = self.directory / f".{ACTIVE}.tmp"
        tmp.write_text(version + "\n", encoding="utf-8")
        os.replace(tmp, self.directory / ACTIVE)
