"""Pruning methods declare their options once, on their config dataclasses."""

from __future__ import annotations

import dataclasses

import pytest

from neuroprune.cli import build_parser
from neuroprune.options import option
from neuroprune.prune import methods


def _prune_args(*extra: str):
    return build_parser(["prune"]).parse_args(["prune", "m.pt", "--out", "p.pt", *extra])


@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_no_option_given_keeps_every_config_default(name):
    spec = methods.METHODS[name]
    assert spec.config(_prune_args()) == spec.config_class()()


def test_given_options_reach_every_config_that_declares_them():
    args = _prune_args("--episodes", "7", "--keep-ratio", "0.4", "--criterion", "l2", "--ternary",
                       "--admm-scope", "layer", "--gradr-steps", "12")
    spear = methods.get_method("spear").config(args)
    assert (spear.episodes, spear.warmup, spear.criterion) == (7, 7, "l2")  # warm-up clamped to the episodes
    assert methods.get_method("uniform").config(args).ratio == 0.4
    assert methods.get_method("sca").config(args).keep_ratio == 0.4
    assert methods.get_method("criticality").config(args).keep_ratio == 0.4
    admm = methods.get_method("admm").config(args)
    assert admm.ternary and admm.scope == "layer"
    assert methods.get_method("gradr").config(args).steps == 12


def test_every_declared_option_is_on_the_command_line_with_its_default():
    text = build_parser(["prune"])._subparsers._group_actions[0].choices["prune"].format_help()
    for spec in methods.METHODS.values():
        for field in dataclasses.fields(spec.config_class()):
            if "cli" in field.metadata:
                assert field.metadata["cli"].flag in text
    assert "search episodes (default 60)" in text


def test_a_new_method_is_one_registry_line(monkeypatch, tmp_path):
    module = tmp_path / "toy_method.py"
    module.write_text(
        "from dataclasses import dataclass, field\n"
        "from neuroprune.options import option, positive_int\n"
        "@dataclass(frozen=True)\n"
        "class ToyConfig:\n"
        "    rounds: int = field(default=3, metadata=option('--toy-rounds', 'toy rounds', positive_int))\n"
        "def toy(model, task, config, *, progress=True):\n"
        "    return ('toy', config.rounds, progress)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(methods.METHODS, "toy", methods.MethodSpec("toy", "a toy", "toy_method", "toy", "ToyConfig"))
    args = _prune_args("--method", "toy", "--toy-rounds", "5", "--quiet")
    assert methods.get_method("toy").run(None, None, args) == ("toy", 5, False)
    with pytest.raises(SystemExit):
        _prune_args("--method", "toy", "--toy-rounds", "0")


def test_option_metadata_shape():
    meta = option("--x-y", "help")
    assert meta["cli"].dest == "x_y"
