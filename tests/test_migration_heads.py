"""The Alembic history is one line: a merge that adds a second head would stop every start-up."""

from __future__ import annotations

from alembic.config import Config
from alembic.script import ScriptDirectory

from evolink.store.db import MIGRATIONS_DIR


def test_migrations_have_exactly_one_head_and_a_linear_history() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    heads = script.get_heads()
    assert len(heads) == 1, f"several Alembic heads {heads}: chain the newest revision after the other"
    revisions = list(script.walk_revisions())
    assert all(len(r._all_down_revisions) <= 1 for r in revisions), "a merge revision: keep the history linear"
    assert revisions[-1].down_revision is None
