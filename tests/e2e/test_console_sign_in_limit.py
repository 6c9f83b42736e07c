"""The console's sign-in limit with two api instances (SCALE_API=2): the failures of both
count together, so a guesser spreading attempts over the instances is refused (429) after
the same ten as against one, on either instance, and the right password is refused too
until the window passes."""

from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.api_support import make_tenant
from tests.e2e.harness import Running, own_stack
from tests.e2e.test_console import PASSWORD


@pytest.fixture(scope="module")
def two_apis() -> Iterator[Running]:
    with own_stack(SCALE_API="2") as running:
        yield running


def _attempt(base: str, email: str, password: str) -> int:
    """One sign-in through the form, as a browser does it: the form's token, then the post."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + "/console/sign-in", timeout=10) as page:
        token = re.search(r'name="login_token" value="([^"]+)"', page.read().decode())
    assert token is not None
    form = {"login_token": token.group(1), "email": email, "password": password}
    request = urllib.request.Request(
        base + "/console/sign-in", data=urllib.parse.urlencode(form).encode(), method="POST"
    )
    try:
        with opener.open(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return err.code


def test_failures_on_two_instances_count_together(two_apis: Running) -> None:
    running = two_apis
    settings = running.stack.settings
    bases = [f"http://127.0.0.1:{settings.port_of(i)}" for i in settings.instances_of("api")]
    assert len(bases) == 2
    tenant = make_tenant(running, numbers=1)
    email = f"limit-{uuid.uuid4().hex[:8]}@example.com"
    made = tenant.call("POST", "/v1/users",
                       {"email": email, "role": "agent", "password": PASSWORD})  # fmt: skip
    assert made.status == 201, made
    # The right password works on both (a sign-in redirects to the inbox: 200 after it).
    assert [_attempt(b, email, PASSWORD) for b in bases] == [200, 200]
    # Ten wrong ones, alternating instances: each answered 401.
    assert [_attempt(bases[i % 2], email, "wrong password") for i in range(10)] == [401] * 10
    # The eleventh, on either instance, and even with the right password: 429.
    assert [_attempt(b, email, "wrong password") for b in bases] == [429, 429]
    assert _attempt(bases[0], email, PASSWORD) == 429
    # The address is limited too (10 a window): from it, another user is refused as well.
    other = f"other-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": other, "role": "agent", "password": PASSWORD}
    assert tenant.call("POST", "/v1/users", body).status == 201
    assert _attempt(bases[1], other, PASSWORD) == 429
