"""Typed configs.

Every config in vq is a pydantic model deriving from ``Config``: unknown keys are an error
(a misspelt key is never silently dropped) and every assignment is validated. Experiment
configs are Python files under ``configs/`` that build these models; loading them, the
``--config-options`` and ``--override`` syntax and the resolved-config dump live in
``vq.core.configfile``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    """Base of every typed config: extra keys forbidden, assignments validated."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        protected_namespaces=(),
        arbitrary_types_allowed=False,
    )
