"""A campaign whose audience is a CSV with the whole stack: the good rows imported with
their own variables and sent, each bad row reported (line, reason), and a CSV with nothing
usable a 422 naming each row."""

from __future__ import annotations

from tests.e2e.api_support import new_customer
from tests.e2e.harness import Running
from tests.e2e.test_campaigns import _tenant, recipients, wait_status


def test_a_csv_audience_imports_the_good_rows_and_reports_the_bad(running: Running) -> None:
    tenant = _tenant(running)
    ann, bo, cy = (new_customer() for _ in range(3))
    text = (
        "to,1,2\n"
        f"+{ann[:2]} {ann[2:5]} {ann[5:]},Ann,\n"  # spaces and a +; the default for {{2}}
        f"{bo},Bo,20%\n"
        "call me,Zed,5%\n"  # line 4: not a number
        f"{cy},,5%\n"  # line 5: {{1}} missing, no default
        f"{cy},Cy,5%,extra\n"  # line 6: one cell too many
        f"{cy},Cy,30%\n"
    )
    body = {
        "name": "csv", "template": {"name": "promo", "language": "en_US"},
        "variables": {"2": "10%"}, "audience": {"csv": text},
    }  # fmt: skip
    made = tenant.call("POST", "/v1/campaigns", body)
    assert made.status == 201, made
    assert made.json["csv"]["imported"] == 3
    rejected = [(b["line"], b["reason"]) for b in made.json["csv"]["rejected"]]
    assert [line for line, _ in rejected] == [4, 5, 6]
    assert "not a phone number" in rejected[0][1] and "{{1}}" in rejected[1][1]
    assert rejected[2][1] == "4 cells, the header has 3"
    started = tenant.call("POST", f"/v1/campaigns/{made.json['id']}/start")
    assert started.status == 200 and started.json["counts"]["total"] == 3, started
    done = wait_status(tenant, made.json["id"], "completed")
    assert done["counts"]["sent"] == 3
    assert {r["to"] for r in recipients(tenant, made.json["id"])} == {ann, bo, cy}
    for who, expected in ((ann, ["Ann", "10%"]), (bo, ["Bo", "20%"]), (cy, ["Cy", "30%"])):
        [sent] = running.graph.sent_to(who)
        parameters = sent["body"]["template"]["components"][0]["parameters"]
        assert [p["text"] for p in parameters] == expected


def test_a_csv_with_nothing_usable_is_a_422_naming_each_row(running: Running) -> None:
    tenant = _tenant(running)
    base = {"name": "csv", "template": {"name": "promo", "language": "en_US"}}
    nothing = tenant.call(
        "POST", "/v1/campaigns", {**base, "audience": {"csv": "to,1,2\nnope,a,b\n15550,x,y\n"}}
    )
    assert nothing.status == 422, nothing
    fields = nothing.json["error"]["fields"]
    assert [f["path"] for f in fields] == ["audience.csv", "audience.csv"]
    assert fields[0]["message"].startswith("line 2:") and fields[1]["message"].startswith("line 3:")
    no_to = tenant.call("POST", "/v1/campaigns", {**base, "audience": {"csv": "name\nAnn\n"}})
    assert no_to.status == 422 and no_to.json["error"]["fields"][0]["path"] == "audience.csv"
    both = tenant.call(
        "POST", "/v1/campaigns",
        {**base, "audience": {"csv": "to\n15550100001\n", "tags": ["vip"]}},
    )  # fmt: skip
    assert both.status == 422 and both.json["error"]["fields"][0]["path"] == "audience"
    assert tenant.call("GET", "/v1/campaigns").json["data"] == []  # nothing recorded
