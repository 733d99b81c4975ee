"""The documentation's commands are real: every ``uv run ...`` line of the docs parses and builds.

Sources: ``README.md``, ``docs/*.md`` and ``configs/**/README.md``; commands are the lines of
fenced code blocks (``bash``/``sh``/``shell``/``console`` or unlabelled) that start with
``uv run`` (after ``$ `` prompts and ``VAR=value`` prefixes), with ``\\`` continuations
joined and ``#`` comments dropped. For each command:

* the program is one of ours (a console script of vq-train, ``python -m vq.train...``,
  ``python bench/<x>.py``, ``pytest`` or ``torchrun -m vq.train...``);
* every ``configs/...py`` it names exists;
* its options parse with the command's own argparse parser (``build_train_parser`` & co.;
  ``export``/``convert``/``consolidate`` and the bench scripts build their parser inline, so
  their entry function is called with ``parse_args`` stopped right after parsing);
* its config builds with its ``--config-options`` and ``--override`` through
  ``vq.train.cli.resolve_config`` (``fid``: through the command's own dataset lookup),
  WITHOUT training: config files only build pydantic models and touch neither data nor
  weights.

Placeholders. Synopsis lines mark optional parts as ``[...]``; those groups are dropped.
The upper-case words of ``PLACEHOLDERS`` and ``<...>`` parts are replaced by concrete values.

Run outputs. Weights and checkpoints that earlier commands write (``--load-model-from``,
``ir_state_dict``, the sources of ``export`` and ``consolidate``) are only parsed, never
opened. A resolved config in a work dir (``work_dirs/NAME/<config>.py``, as a CONFIG
argument or an option value such as ``it_config``/``ir_config``) is replaced by a stand-in
file the test writes from the documented ``train NAME ...`` command that produces it
(``ResolvedConfigs``), so the later stages of a pipeline are checked against the exact
options of the earlier ones. A command pointing at a resolved config that no documented
command produces is only parsed; its config-building check is skipped with that reason.

Links: every relative link ``[text](path)`` of these files must name an existing file.
``python`` code blocks must compile.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]

# Upper-case placeholder words of synopsis lines -> a concrete value of the same kind.
PLACEHOLDERS = {
    "NAME": "docs/example",
    "CONFIG": "configs/demo/vqgan_photos.py",
    "DIR": "work_dirs/docs/example/checkpoints/iter_100",
    "F": "work_dirs/docs/example/checkpoints/iter_100",
    "N": "2",
    "K": "2",
    "V": "1",
    "PATH": "work_dirs/docs/example/out",
    "OUT_DIR": "work_dirs/docs/example/out",
    "RUN_OR_CHECKPOINT": "work_dirs/docs/example",
    "KIND": "taming",
    "CHECKPOINT": "work_dirs/docs/example/checkpoints/iter_100",
}
ANGLE = re.compile(r"<[^<>\s][^<>]*>")  # <tokenizer run>, <config>
CONFIG_REF = re.compile(r"(?<![\w/.-])configs/[\w./-]+\.py")
WORK_DIR_PY = re.compile(r"(?<![\w/.-])work_dirs/[\w./<>-]+\.py$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
ENV_PREFIX = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+")


def doc_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    files += sorted((REPO / "configs").glob("**/README.md"))
    return [f for f in files if f.is_file()]


# ------------------------------------------------------------------ extraction --------


@dataclass
class Block:
    doc: Path
    line: int
    language: str
    lines: list[str] = field(default_factory=list)


def code_blocks(doc: Path) -> Iterator[Block]:
    block: Block | None = None
    fence = ""
    for number, text in enumerate(doc.read_text().splitlines(), start=1):
        match = FENCE.match(text)
        if block is None:
            if match:
                fence, block = match.group(2), Block(doc, number, match.group(3).lower())
        elif match and match.group(2).startswith(fence[0]) and not match.group(3):
            yield block
            block = None
        else:
            block.lines.append(text)


@dataclass
class Command:
    doc: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def shell_commands(block: Block) -> Iterator[Command]:
    """The ``uv run`` commands of a shell block, continuation lines joined."""
    pending: list[str] = []
    start = block.line
    for offset, raw in enumerate(block.lines, start=1):
        text = raw.strip()
        if not pending:
            start = block.line + offset
            text = ENV_PREFIX.sub("", text.removeprefix("$ "))
            if not text.startswith("uv run "):
                continue
        if text.endswith("\\"):
            pending.append(text[:-1])
            continue
        pending.append(text)
        yield Command(block.doc, start, " ".join(pending))
        pending = []


def all_commands() -> list[Command]:
    return [
        command
        for doc in doc_files()
        for block in code_blocks(doc)
        if block.language in SHELL_LANGUAGES
        for command in shell_commands(block)
    ]


def python_blocks() -> list[Block]:
    return [b for doc in doc_files() for b in code_blocks(doc) if b.language == "python"]


def drop_optional_groups(tokens: list[str]) -> list[str]:
    """Remove synopsis groups ``[--x V ...]``: from a token starting with ``[`` to the token
    that closes it (``.a.b[-1].c`` inside a token is not a group)."""
    out, depth = [], 0
    for token in tokens:
        if depth or token.startswith("["):
            depth += token.count("[") - token.count("]")
            continue
        out.append(token)
    return out


def concrete(tokens: list[str]) -> list[str]:
    return [ANGLE.sub("x", PLACEHOLDERS.get(t, t)) for t in tokens]


def argv_of(command: Command) -> list[str]:
    """Words after ``uv run``: comments dropped, optional groups removed, placeholders filled."""
    tokens = shlex.split(command.text, comments=True)
    assert tokens[:2] == ["uv", "run"], command.text
    return concrete(drop_optional_groups(tokens[2:]))


# ------------------------------------------------------------------ parsing -----------


class _Parsed(Exception):
    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


def parse_with_inline_parser(
    entry: Callable[..., Any],
    argv: list[str],
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    *call: Any,
) -> argparse.Namespace:
    """Run ``entry`` until its own parser has parsed ``argv`` (from ``call`` or ``sys.argv``),
    then stop it: nothing after the parsing runs."""
    real_parse = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, args: Any = None, namespace: Any = None):
        raise _Parsed(real_parse(self, args, namespace))

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
        patch.setattr(sys, "argv", ["prog", *argv])
        try:
            entry(*call)
        except _Parsed as parsed:
            return parsed.namespace
        except SystemExit:
            pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse for {entry.__name__}")
    pytest.fail(f"{where}: {entry.__name__} returned without parsing its arguments")


def parse(parser: argparse.ArgumentParser, argv: list[str], where: str) -> argparse.Namespace:
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `{parser.prog} {shlex.join(argv)}` does not parse")


# ------------------------------------------------------------------ run outputs -------


class ResolvedConfigs:
    """Stand-ins for the resolved config files that documented runs write.

    ``work_dirs/NAME/<config>.py`` is what ``train NAME configs/.../<config>.py [options]``
    writes. When the docs contain that producing ``train`` command, the stand-in is made the
    same way: the producer's config is built with its options and overrides (its own
    references to resolved configs made first, recursively) and dumped with
    ``dump_config`` into a temporary work dir. Commands that point at a resolved config no
    documented command produces get no config-building check (``pytest.skip`` says which).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: dict[str, Path] = {}
        self.producers: dict[str, list[str]] = {}
        from vq.train.cli import build_train_parser

        for command in all_commands():
            argv = argv_of(command)
            if argv[0] != "train":
                continue
            try:
                args = build_train_parser().parse_args(argv[1:])
            except SystemExit:  # reported by test_command
                continue
            key = f"work_dirs/{args.name}/{Path(args.config).name}"
            self.producers.setdefault(key, argv[1:])

    def path(self, reference: str, where: str, seen: tuple[str, ...] = ()) -> Path:
        """The stand-in file of ``reference`` (a ``work_dirs/.../*.py`` path)."""
        if reference in self.made:
            return self.made[reference]
        if reference not in self.producers or reference in seen:
            pytest.skip(
                f"{where}: no documented `train` command writes {reference}, so its config is "
                "not built (options only parsed)"
            )
        from vq.core.configfile import dump_config
        from vq.train.cli import build_train_parser, resolve_config

        args = build_train_parser().parse_args(self.producers[reference])
        options = self.substitute(args.config_options, where, (*seen, reference))
        config = resolve_config(args.config, options, args.override)
        target = self.root / reference
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(dump_config(config, f"stand-in for {reference} (test_docs)"))
        self.made[reference] = target
        return target

    def substitute(self, values: list[str], where: str, seen: tuple[str, ...] = ()) -> list[str]:
        """``values`` with every ``work_dirs/.../*.py`` part replaced by its stand-in."""
        out = []
        for value in values:
            key, sep, rest = value.rpartition("::") if "::" in value else ("", "", value)
            if WORK_DIR_PY.search(rest):
                rest = str(self.path(rest, where, seen))
            out.append(f"{key}{sep}{rest}")
        return out


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> ResolvedConfigs:
    return ResolvedConfigs(tmp_path_factory.mktemp("resolved"))


def build_run_config(
    config: Path, options: list[str], overrides: list[str], where: str, resolved: ResolvedConfigs
) -> None:
    from vq.train.cli import resolve_config

    source = Path(resolved.substitute([str(config)], where)[0])
    resolve_config(source, resolved.substitute(options, where), overrides)


# ------------------------------------------------------------------ the commands ------


def check_train(argv: list[str], where: str, resolved: ResolvedConfigs) -> None:
    from vq.train.cli import build_train_parser

    args = parse(build_train_parser(), argv, where)
    build_run_config(args.config, args.config_options, args.override, where, resolved)


def check_sample(argv: list[str], where: str, resolved: ResolvedConfigs) -> None:
    from vq.train.sample import build_parser

    args = parse(build_parser(), argv, where)
    build_run_config(args.config, args.config_options, args.override, where, resolved)


def check_shard(argv: list[str], where: str, resolved: ResolvedConfigs) -> None:
    from vq.train.shard_command import build_parser, dataset_config

    dataset_config(parse(build_parser(), argv, where))


def check_evaluation(command: str) -> Callable[[list[str], str, ResolvedConfigs], None]:
    def check(argv: list[str], where: str, resolved: ResolvedConfigs) -> None:
        from vq.train import eval_cli, fid_command

        builders = {
            "val": eval_cli.build_val_parser,
            "test": eval_cli.build_test_parser,
            "fid": fid_command.build_fid_parser,
        }
        args = parse(builders[command](), argv, where)
        if command == "fid":
            args.config = Path(resolved.substitute([str(args.config)], where)[0])
            args.config_options = resolved.substitute(args.config_options, where)
            fid_command._dataset_of(args)  # what `fid` builds before it reads any image
        else:
            build_run_config(args.config, args.config_options, args.override, where, resolved)

    return check


def check_inline(module: str, function: str, with_argv: bool) -> Callable[..., None]:
    def check(argv: list[str], where: str, monkeypatch: pytest.MonkeyPatch) -> None:
        entry = getattr(importlib.import_module(module), function)
        parse_with_inline_parser(entry, argv, where, monkeypatch, *([argv] if with_argv else []))

    return check


def check_bench(argv: list[str], where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    script = REPO / argv[0]
    assert script.is_file(), f"{where}: {argv[0]} does not exist"
    spec = importlib.util.spec_from_file_location(f"_docs_bench_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)  # defines main(); runs nothing under another __name__
    parse_with_inline_parser(module.main, argv[1:], where, monkeypatch)


def check_pytest(argv: list[str], where: str, resolved: ResolvedConfigs) -> None:
    for token in argv:
        if not token.startswith("-") and ("/" in token or token.endswith(".py")):
            path = token.split("::")[0]
            assert (REPO / path).exists(), f"{where}: pytest target {path} does not exist"


SIMPLE: dict[str, Callable[[list[str], str, ResolvedConfigs], None]] = {
    "train": check_train,
    "sample": check_sample,
    "val": check_evaluation("val"),
    "test": check_evaluation("test"),
    "fid": check_evaluation("fid"),
    "shard": check_shard,
    "pytest": check_pytest,
}
INLINE: dict[str, Callable[..., None]] = {
    "export": check_inline("vq.train.export", "export_command", with_argv=True),
    "convert": check_inline("vq.train.export", "convert_command", with_argv=True),
    "consolidate": check_inline("vq.train.cli", "consolidate_main", with_argv=True),
}
MODULES = {  # python -m MODULE / torchrun -m MODULE -> the command it runs
    "vq.train": "train",
    "vq.train.sample": "sample",
}


def console_scripts() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="console_scripts") if ep.value.startswith("vq.")}


def check_command(
    argv: list[str], where: str, monkeypatch: pytest.MonkeyPatch, resolved: ResolvedConfigs
) -> None:
    program, rest = argv[0], argv[1:]
    if program == "torchrun":
        from torch.distributed.run import get_args_parser

        launch = parse(get_args_parser(), rest, where)
        assert launch.module, f"{where}: torchrun commands run a module (-m vq.train...)"
        program, rest = "python", ["-m", launch.training_script, *launch.training_script_args]
    if program == "python":
        if rest[:1] == ["-c"]:
            compile(rest[1], where, "exec")
            return
        if rest[:1] == ["-m"]:
            module, rest = rest[1], rest[2:]
            if module == "vq.train.eval_cli":
                program, rest = rest[0], rest[1:]
            else:
                assert module in MODULES, f"{where}: unknown module {module}"
                program = MODULES[module]
        else:
            assert rest and rest[0].startswith("bench/"), f"{where}: python runs bench/ scripts"
            check_bench(rest, where, monkeypatch)
            return
    if program in SIMPLE:
        if program != "pytest":
            assert program in console_scripts(), f"{where}: {program} is not a console script"
        SIMPLE[program](rest, where, resolved)
    elif program in INLINE:
        assert program in console_scripts(), f"{where}: {program} is not a console script"
        INLINE[program](rest, where, monkeypatch)
    else:
        pytest.fail(f"{where}: `{program}` is not a command of this project")


# ------------------------------------------------------------------ tests -------------

COMMANDS = all_commands()


def test_the_docs_have_commands() -> None:
    programs = {argv_of(c)[0] for c in COMMANDS}
    assert {"train", "val", "test", "fid", "sample", "export", "convert"} <= programs


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_command(
    command: Command, monkeypatch: pytest.MonkeyPatch, resolved: ResolvedConfigs
) -> None:
    monkeypatch.chdir(REPO)  # configs/ paths and the config loader are repo-relative
    for reference in CONFIG_REF.findall(command.text):
        assert (REPO / reference).is_file(), f"{command.where}: {reference} does not exist"
    check_command(argv_of(command), command.where, monkeypatch, resolved)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda d: str(d.relative_to(REPO)))
def test_relative_links_exist(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)  # links in code are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)}: broken links {broken}"


@pytest.mark.parametrize(
    "block", python_blocks(), ids=[f"{b.doc.relative_to(REPO)}:{b.line}" for b in python_blocks()]
)
def test_python_blocks_compile(block: Block) -> None:
    compile("\n".join(block.lines), f"{block.doc}:{block.line}", "exec")


# ------------------------------------------------------------------ the checker itself


def test_extraction_joins_continuations_and_fills_placeholders(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "text\n```bash\n$ VQ_WORK_DIRS=/tmp uv run train NAME CONFIG [--seed N] \\\n"
        "    --override .a.b[-1].c:1  # comment\necho no\n```\n"
        "```python\nuv run train not_shell\n```\n"
    )
    blocks = list(code_blocks(doc))
    commands = [c for b in blocks if b.language in SHELL_LANGUAGES for c in shell_commands(b)]
    assert [c.line for c in commands] == [3]
    assert argv_of(commands[0]) == [
        "train",
        PLACEHOLDERS["NAME"],
        PLACEHOLDERS["CONFIG"],
        "--override",
        ".a.b[-1].c:1",
    ]


def test_bad_commands_fail(monkeypatch: pytest.MonkeyPatch, resolved: ResolvedConfigs) -> None:
    from vq.core.errors import UserError

    monkeypatch.chdir(REPO)
    demo = "configs/demo/vqgan_photos.py"
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        check_command(["train", "x", demo, "--no-such"], "t", monkeypatch, resolved)
    with pytest.raises(UserError, match="not_an_option"):
        check_command(
            ["train", "x", demo, "--config-options", "not_an_option:1"], "t", monkeypatch, resolved
        )
    with pytest.raises(UserError, match="no_such_field"):
        check_command(
            ["train", "x", demo, "--override", ".no_such_field:1"], "t", monkeypatch, resolved
        )
    with pytest.raises(pytest.fail.Exception, match="does not parse"):
        check_command(["export", "only_one_argument"], "t", monkeypatch, resolved)
    with pytest.raises(pytest.skip.Exception, match="no documented `train` command"):
        check_command(
            ["sample", "x", "work_dirs/nobody/x.py", "--load-model-from", "w"],
            "t",
            monkeypatch,
            resolved,
        )


def test_resolved_configs_are_made_by_their_documented_producer(
    resolved: ResolvedConfigs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stand-in of ``work_dirs/demo/ar/ar_photos.py`` carries the producer's options."""
    from vq.core.configfile import load_config

    monkeypatch.chdir(REPO)
    assert "work_dirs/demo/ar/ar_photos.py" in resolved.producers
    config = load_config(resolved.path("work_dirs/demo/ar/ar_photos.py", "t"))
    assert config.tokenizer is not None and len(config.tokenizer.state_dicts) == 2
