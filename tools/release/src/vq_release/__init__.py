"""Development tools of the vq workspace (not a library: no ``vq.*`` package depends on it).

* ``vq_release.workspace``: the library members, their versions and requirements, and the
  compatibility policy of the ranges between them;
* ``vq_release.requirements``: what each member imports (read with ``ast``) against what
  its ``pyproject.toml`` declares;
* ``vq_release.release``: ``uv run release PACKAGE VERSION [--tag]``;
* ``vq_release.changes``: ``uv run changed-packages``, the members CI tests first.
"""
