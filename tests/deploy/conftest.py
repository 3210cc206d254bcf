"""Shared helpers for the deploy/ tests: the repository root and the settings' environment names."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
