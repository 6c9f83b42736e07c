"""Documents generated from the code are what the code would generate now."""

from __future__ import annotations

import dataclasses

from ops.envfile import GENERATED, PLACEHOLDERS
from shared import configdoc
from shared.config import Settings
from shared.events import catalogue
from shared.services import DECLARED, DEFAULT_QUEUES, STAGES, queues_variable


def test_the_event_catalogue_is_up_to_date() -> None:
    assert catalogue.DOC.read_text() == catalogue.render(), (
        "docs/events.md is stale: run `python -m shared.events.catalogue`"
    )


def test_the_catalogue_describes_every_event_and_field_type() -> None:
    text = catalogue.render()
    for cls in catalogue.events.ALL:
        assert f"### {cls.__name__}" in text
    assert "| `speak` | bool |" in text
    assert "BotReplied (schema 2)" in text


def test_the_configuration_reference_is_up_to_date() -> None:
    assert configdoc.DOC.read_text() == configdoc.render(), (
        "docs/configuration.md is stale: run `python -m shared.configdoc` (or `make docs`)"
    )


def test_the_reference_lists_every_variable_the_settings_are_read_from() -> None:
    text = configdoc.render()
    for f in dataclasses.fields(Settings):
        if f.name not in configdoc.PER_ENTRY and f.name != "extra":
            assert f"| `{f.name.upper()}` |" in text, f.name
    for spec in DECLARED:
        assert f"| `{spec.port_variable}` | `{spec.port}` | int |" in text
    for stage in STAGES:
        assert f"| `{queues_variable(stage)}` | `{DEFAULT_QUEUES}` | int |" in text
    assert "| `WHATSAPP_TIMEOUT` | `8` | float |" in text
    assert "| `WEBHOOK_ALLOW_HTTP` | `false` | bool |" in text
    assert "| `OTEL_EXPORTER_OTLP_ENDPOINT` |" in text and "OpenTelemetry SDK" in text


def test_the_reference_says_where_settings_come_from() -> None:
    header = configdoc.render().split("\n## Broker and database\n")[0]
    assert "`python -m shared.configdoc`" in header and "do not edit" in header
    assert "process environment first, then from the settings file" in header
    # What `make up` writes into the file (ops/envfile.py), named as it is.
    for name in (*GENERATED, *PLACEHOLDERS):
        assert f"`{name}" in header, name
