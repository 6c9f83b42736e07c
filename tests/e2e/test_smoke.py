from shared.payloads import text_message
from tests.e2e.harness import Running, new_customer
from tests.support.fakes import wait_for


def test_a_signed_text_gets_one_reply_at_the_graph_api(bot: Running) -> None:
    customer = new_customer()
    status, _ = bot.post(text_message("hello there", customer=customer))
    assert status == 200
    wait_for(lambda: bot.graph.texts_to(customer) == ["echo: hello there"], timeout=20)
