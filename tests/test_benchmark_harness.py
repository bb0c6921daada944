"""The side-by-side benchmark harness compares what it says it compares: every
``throughput.jax_step`` call builds its own step program (a reused runner once made every
"variant" the same program), and ``conv_rules``' overrides parse and apply as documented."""

import os
import sys

import pytest

from cnn_jax import conv
from cnn_jax.train import assemble

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import conv_rules
import throughput


def test_variant_overrides_parse_and_apply():
    v = conv_rules.parse_variant("1:xla/-/patches+6:-/col2im_nhwc/-")
    assert v == {1: ("xla", None, "patches"), 6: (None, "col2im_nhwc", None)}
    rule = conv_rules.rule_with(v, conv.rule_choice)
    assert rule((5, 5, 1, 6)) == ("xla", "xla", "patches")
    assert rule((5, 5, 6, 16)) == (conv.rule_choice((5, 5, 6, 16))[0], "col2im_nhwc", "xla")
    assert rule((3, 3, 32, 64)) == conv.rule_choice((3, 3, 32, 64))  # no override: the rules'


@pytest.mark.parametrize("text,needle", [("1:bogus/-/-", "no forward formulation 'bogus'"),
                                         ("x:-/-/-", "is not CIN:FORWARD"), ("1:-/-", "is not CIN:FORWARD")])
def test_a_bad_variant_is_one_line_naming_the_choices(text, needle):
    with pytest.raises(SystemExit) as e:
        conv_rules.parse_variant(text)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_every_jax_step_call_compiles_its_own_program(monkeypatch):
    auto, seen = conv.rule_choice, []
    for overrides in ({}, {1: ("xla", None, None)}):
        monkeypatch.setattr(conv, "rule_choice", conv_rules.rule_with(overrides, auto))
        throughput.jax_step("lenet5", (28, 28, 1), 8, "max", "single")
        (runner,) = assemble.PROGRAMS.runners.values()
        seen.append((runner, runner._train._cache_size()))
    (first, first_size), (second, second_size) = seen
    assert second is not first and first_size == second_size == 1  # each traced and compiled once
