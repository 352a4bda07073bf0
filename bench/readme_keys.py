"""Rewrites the README's "Config keys" tables from src/core/keys.py (tests/test_keys.py fails while they differ).

    python bench/readme_keys.py
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from core.keys import README_END, README_START, readme_section  # noqa: E402


def main():
    path = ROOT / "README.md"
    text = path.read_text()
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    path.write_text(text[:start] + readme_section() + text[end:])
    print(f"{path}: Config keys tables rewritten")


if __name__ == "__main__":
    main()
