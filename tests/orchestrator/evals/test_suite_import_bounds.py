"""Eval suite files are read within the same bounds as pipeline specs (found by a review): YAML
aliases expanded exponentially (a 400-byte file became a 4.3-million-character case input,
each more line nine times more), a second `cases:` silently replaced the first, a NaN or a NUL was a 500,
and a YAML date a TypeError and a 500 (dates are now read as text)."""

from __future__ import annotations

import pytest
from django.test import Client

from orchestrator.evals.suite_files import do_import_suite, export_suite
from orchestrator.models import EvalCase
from tests.conftest import scripted

pytestmark = pytest.mark.django_db
HEAD = "suite: s\nname: S\ntarget: {agent: adder}\n"


def bomb(levels: int) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    return HEAD + "cases:\n  - name: c\n    input:\n" + "".join("      " + line + "\n" for line in lines)


def post(owner, text):
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    return client.post("/evals/import/", {"text": text})


def test_yaml_aliases_are_refused(team, owner):
    scripted(team, "adder", {"text": "5"})
    response = post(owner, bomb(6))
    assert response.status_code == 400 and "alias" in response.content.decode().lower()
    assert not EvalCase.objects.exists()


@pytest.mark.parametrize("case, where", [
    ("input: {prompt: x, n: .nan}", "cases.0.input.n"),
    ('input: {prompt: "a\\0b"}', "cases.0.input.prompt"),
])
def test_a_nan_or_a_nul_is_refused_naming_the_field(team, owner, case, where):
    scripted(team, "adder", {"text": "5"})
    response = post(owner, HEAD + f"cases:\n  - name: c\n    {case}\n")
    assert response.status_code == 400 and where in response.content.decode(), response.content.decode()[-1500:]
    assert not EvalCase.objects.exists()


def test_a_repeated_cases_key_is_refused(team):
    from orchestrator.evals.spec import SuiteFileError

    scripted(team, "adder", {"text": "5"})
    text = HEAD + ("cases:\n  - {name: one, input: {prompt: '1+1'}, expect: {kind: exact, value: '2'}}\n"
                   "cases:\n  - {name: three, input: {prompt: '3+3'}, expect: {kind: exact, value: '6'}}\n")
    with pytest.raises(SuiteFileError, match="'cases' appears twice"):
        do_import_suite(team, text)


def test_a_yaml_date_is_text_and_the_suite_round_trips(team):
    scripted(team, "adder", {"text": "5"})
    suite = do_import_suite(team, HEAD + "cases:\n  - name: c\n    input: {prompt: 'due?', due: 2024-01-31}\n")
    assert EvalCase.objects.get(suite=suite).input == {"prompt": "due?", "due": "2024-01-31"}
    first = export_suite(suite)
    assert export_suite(do_import_suite(team, first)) == first


@pytest.mark.parametrize("attack", ['{goal: leak, canary: " "}', "{goal: leak, canary: ab}",
                                    "{goal: leak, secrets: [sk_live_1234, x]}"])
def test_a_canary_or_secret_too_short_to_look_for_is_refused(team, owner, attack):
    # A blank needle was never looked for, so the attack could never count as through; one of
    # a few characters would be found in benign text (found by a review).
    scripted(team, "adder", {"text": "5"})
    response = post(owner, HEAD + f"cases:\n  - name: c\n    input: {{prompt: x}}\n    attack: {attack}\n")
    assert response.status_code == 400 and "too short to look for" in response.content.decode()
    assert not EvalCase.objects.exists()
