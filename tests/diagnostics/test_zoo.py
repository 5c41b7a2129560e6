"""Verdicts on models nobody here wrote: stock models raise no alarm, known failures their error.

The zoo (`zoo.py`) holds every `keras.applications` constructor that builds offline, keras-hub
backbones built small from constructor arguments, and known failures. Members that take more
than a few seconds are left to `benchmarks/zoo.py`, which runs the whole zoo and records its
table in benchmarks/README.md.
"""
import os

import keras
import pytest
import zoo

import keras_initkit

# What a stock model must never get: VGG may warn that its signal shrinks, and it does.
ALARMS = ("vanishing", "exploding", "nonfinite", "rank_collapse", "entropy_collapse")
# The stock members the suite runs (each costs a trace of the whole model: about 2-8 s on 2
# cores); benchmarks/zoo.py runs every member. KIT_ZOO=all runs every quick one here too.
IN_TESTS = ("ResNet50", "MobileNetV2", "ConvNeXtTiny", "VGG16", "GPT2Backbone",
            "BertBackbone", "LlamaBackbone", "GemmaBackbone", "MistralBackbone",
            "ViTBackbone", "DINOV2Backbone", "he_relu_mlp", "stock_transformer")
STOCK = [m for m in zoo.members(quick=True) if m.expect is None
         and (m.name in IN_TESTS or os.environ.get("KIT_ZOO") == "all")]
FAILURES = [m for m in zoo.members(quick=True) if m.expect is not None]
# Stock models also diagnosed with labels and their loss (the surrogate is the default).
WITH_LABELS = ("ResNet50", "GPT2Backbone", "LlamaBackbone", "ViTBackbone", "BertBackbone")


@pytest.fixture(autouse=True)
def fresh_session():
    yield
    keras.backend.clear_session()  # a zoo of models: free each one's graph


def describe(report):
    return [(f.kind, f.signal, f.severity, f.path, f"{f.value:.3g}") for f in report.findings]


def assert_no_alarm(member, report):
    assert report.healthy, (member.name, describe(report))
    # Glorot under 13-16 ReLU convolutions does shrink VGG's signal 100-fold (He et al. 2015):
    # it trains, slower, so a warning is right there.
    alarms = [f for f in report.findings if f.kind in ALARMS
              and not (member.name.startswith("VGG") and f.severity == "warning")]
    assert not alarms, (member.name, member.note, describe(report))


@pytest.mark.parametrize("member", STOCK, ids=lambda m: m.name)
def test_a_stock_model_raises_no_alarm(member):
    model = member.build()
    assert_no_alarm(member, keras_initkit.diagnose(model, member.batch(model, 0)))


@pytest.mark.parametrize("name", WITH_LABELS)
def test_a_stock_model_raises_no_alarm_with_labels(name):
    member = zoo.by_name(name)
    model = member.build()
    report = keras_initkit.diagnose(model, member.batch(model, 0), member.labels(model, 0),
                                    loss=member.loss)
    assert_no_alarm(member, report)


@pytest.mark.parametrize("member", FAILURES, ids=lambda m: m.name)
def test_a_known_failure_is_an_error_of_its_kind(member):
    model = member.build()
    report = keras_initkit.diagnose(model, member.batch(model, 0))
    errors = {f.kind for f in report.findings if f.severity == "error"}
    assert member.expect in errors, (member.name, member.note, describe(report))
