"""Config files, --config-options, --override and the resolved-config dump."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vq.core.configfile import (
    apply_overrides,
    config_parameters,
    dump_config,
    fingerprint,
    load_config,
    parse_assignments,
    parse_path,
    parse_value,
)
from vq.core.errors import UserError

MODELS = """
from typing import Literal
from vq.core.config import Config

class Optim(Config):
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)

class Callback(Config):
    name: str
    options: dict[str, object] = {}

class Experiment(Config):
    kind: Literal["toy"] = "toy"
    iters: int = 10
    optim: Optim = Optim()
    callbacks: list[Callback] = []
    tags: dict[str, str] = {}
    note: str | None = None
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "toy_models.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "configs" / "toy" / "exp.py"
    path.parent.mkdir(parents=True)
    path.write_text(
        textwrap.dedent(
            """
            from toy_models import Callback, Experiment, Optim

            def config(iters: int = 100, lr: float = 1e-3, tag: str = "base", extra=None):
                return Experiment(
                    iters=iters,
                    optim=Optim(lr=lr),
                    callbacks=[Callback(name="log"), Callback(name="ckpt")],
                    tags={"tag": tag},
                    note=None if extra is None else repr(extra),
                )
            """
        )
    )
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3),
        ("-2.5e-3", -2.5e-3),
        ("(256, 256)", (256, 256)),
        ("[1, 'a', None]", [1, "a", None]),
        ("dict(strict=False)", {"strict": False}),
        ("dict(a=dict(b=(1, 2)), c=[True])", {"a": {"b": (1, 2)}, "c": [True]}),
        ("{'x': 1}", {"x": 1}),
        ("2**10", 1024),
        ("'text'", "text"),
        ("tuple([1, 2])", (1, 2)),
    ],
)
def test_literal_values(text: str, expected: object) -> None:
    assert parse_value(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "open('x')",
        "a.b",
        "lambda: 1",
        "[x for x in ()]",
        "2**99999",
    ],
)
def test_values_are_never_evaluated(text: str) -> None:
    with pytest.raises(UserError, match="cannot parse value"):
        parse_value(text)


def test_raw_strings_and_literals() -> None:
    parsed = parse_assignments(
        ["it_config::configs/vqkd/clip.py", "iters:1000", "name::1000", "sizes:(1,2)", "url::a:b"]
    )
    assert parsed == {
        "it_config": "configs/vqkd/clip.py",
        "iters": 1000,
        "name": "1000",
        "sizes": (1, 2),
        "url": "a:b",
    }
    with pytest.raises(UserError, match="malformed option"):
        parse_assignments(["no_colon"])


def test_options_become_keyword_arguments(config_file: Path) -> None:
    config = load_config(config_file, parse_assignments(["iters:7", "lr:0.5", "tag::x y"]))
    assert config.iters == 7
    assert config.optim.lr == 0.5
    assert config.tags == {"tag": "x y"}
    assert set(config_parameters(config_file)) == {"iters", "lr", "tag", "extra"}


def test_unknown_option_is_an_error(config_file: Path) -> None:
    with pytest.raises(UserError, match=r"does not take option 'itres'; it accepts: iters, lr"):
        load_config(config_file, {"itres": 3})


def test_wrong_type_in_option_names_the_field(config_file: Path) -> None:
    with pytest.raises(UserError, match=r"\.iters: .*integer"):
        load_config(config_file, {"iters": "many"})


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        (".a.b[-1].c", ["a", "b", -1, "c"]),
        ("[0]", [0]),
        (".tags['some key']", ["tags", "some key"]),
        (".x[2][-3]", ["x", 2, -3]),
    ],
)
def test_override_paths(path: str, steps: list[object]) -> None:
    assert parse_path(path) == steps


@pytest.mark.parametrize("path", ["a.b", ".a.", ".a[", ".a[f()]", ".a[1.5]", ""])
def test_malformed_override_paths(path: str) -> None:
    with pytest.raises(UserError):
        parse_path(path)


def test_overrides_set_nested_fields_and_revalidate(config_file: Path) -> None:
    config = load_config(config_file)
    out = apply_overrides(
        config,
        parse_assignments(
            [
                ".iters:5",
                ".optim.betas:(0.5, 0.9)",
                ".callbacks[-1].name::checkpoint",
                ".callbacks[0].options:dict(strict=False, keys=[1])",
                ".tags.new::value",
                ".tags['tag']::replaced",
            ]
        ),
    )
    assert out.iters == 5
    assert out.optim.betas == (0.5, 0.9)
    assert [c.name for c in out.callbacks] == ["log", "checkpoint"]
    assert out.callbacks[0].options == {"strict": False, "keys": [1]}
    assert out.tags == {"tag": "replaced", "new": "value"}
    assert config.iters == 100  # the original is untouched


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (".itres:5", r"\.itres: unknown field"),
        (".optim.lrr:5", r"\.optim\.lrr: unknown field"),
        (".callbacks[5].name::x", r"out of range \(length 2\)"),
        (".callbacks[-3].name::x", r"out of range"),
        (".missing.deeper:1", r"\.missing does not exist"),
        (".iters.deeper:1", r"is a value, not a container"),
        (".iters::many", r"\.iters: .*integer"),
        (".optim.betas:(1, 2, 3)", r"\.optim\.betas"),
    ],
)
def test_bad_overrides_name_the_culprit(config_file: Path, override: str, message: str) -> None:
    config = load_config(config_file)
    with pytest.raises(UserError, match=message):
        apply_overrides(config, parse_assignments([override]))


def test_resolved_config_loads_again(config_file: Path, tmp_path: Path) -> None:
    config = apply_overrides(
        load_config(config_file, {"extra": (1, "x")}), {".callbacks[1].options": {"k": [1, 2]}}
    )
    dumped = tmp_path / "resolved.py"
    dumped.write_text(dump_config(config, "command: train x y"))
    again = load_config(dumped)
    assert again == config
    assert fingerprint(again) == fingerprint(config)
    assert dumped.read_text().startswith('"""Resolved config')
    with pytest.raises(UserError, match="does not take option"):
        load_config(dumped, {"iters": 1})


def test_missing_and_invalid_config_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="config file not found: .*nope.py"):
        load_config(tmp_path / "nope.py")
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n")
    with pytest.raises(UserError, match="does not define a function config"):
        load_config(bad)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("def config():\n    return {'iters': 1}\n")
    with pytest.raises(UserError, match="returned dict, not a vq Config"):
        load_config(wrong)


def test_a_config_file_with_a_syntax_error_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def config(:\n    pass\n")
    with pytest.raises(UserError, match=r"broken\.py: syntax error at line 1"):
        load_config(broken)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1/0", "division by zero"),
        ("7//0", "division or modulo by zero"),
        ("1%0", "modulo"),
        ("10.0**400", "Result too large|Numerical result out of range"),
        ("1e308*10", "not a finite number"),
        ("((9**1024)**1024)**1024", "too large"),  # each power alone is small
        ("9**9**9**9", "too large"),
        ("2**4097", "too large"),
        ("(2**4000)*(2**4000)", "too large"),
        ("-" * 100_000 + "1", "nested too deeply"),
        ("(" * 300 + "1" + ")" * 300, "too many nested parentheses|nested too deeply"),
    ],
)
def test_arithmetic_is_bounded_and_its_errors_are_user_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=f"cannot parse value.*({message})"):
        parse_value(text)


def test_bounded_arithmetic_still_computes_config_numbers() -> None:
    assert parse_value("4.5e-4*8") == pytest.approx(3.6e-3)
    assert parse_value("250*1000") == 250_000
    assert parse_value("2**64-1") == 18446744073709551615
    assert parse_value("(1, 2**10, -3//2)") == (1, 1024, -2)


ADVERSARIAL = """
import sys
from vq.core.configfile import parse_value
from vq.core.errors import UserError
for text in sys.argv[1:]:
    try:
        parse_value(text)
    except UserError:
        pass
print("done")
"""


def test_adversarial_nesting_cannot_hang_the_parser() -> None:
    """A guard against hangs, not a timing: the child would take hours without the bound."""
    texts = ["((((9**1024)**1024)**1024)**1024)**1024", "(2**4096)**(2**4096)", "9**9**9**9**9"]
    result = subprocess.run(
        [sys.executable, "-c", ADVERSARIAL, *texts], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "done", result.stderr
