import os
from pathlib import Path

from shared.payloads import text_message
from shared.services import DECLARED, SERVICES
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import wait_for


def test_a_signed_text_gets_one_reply_at_the_graph_api(bot: Running) -> None:
    customer = new_customer()
    status, _ = bot.post(text_message("hello there", customer=customer))
    assert status == 200
    wait_for(lambda: bot.graph.texts_to(customer) == ["echo: hello there"], timeout=20)


def niceness(pid: int) -> int:
    # Field 19 of /proc/<pid>/stat, counted after the command name's closing parenthesis.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_ingress_runs_ahead_of_the_pipeline_for_the_cpu(bot: Running) -> None:
    """Webhook acks are what Meta times: under load, ingress must win the CPU over the
    consumers (WORKER_NICE), whose work can wait milliseconds without anyone retrying."""
    stack = bot.stack
    nice = {service: niceness(stack.pid(service) or 0) for service in SERVICES}
    assert stack.settings.worker_nice > 0
    public = {s.name for s in DECLARED if s.public}
    assert public >= {"ingress", "api"}
    assert all(nice[s] == os.nice(0) for s in public), nice
    assert all(
        nice[s] == os.nice(0) + stack.settings.worker_nice for s in SERVICES if s not in public
    ), nice
