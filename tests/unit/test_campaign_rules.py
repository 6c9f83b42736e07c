"""The pure rules of campaigns: the audience at start, variants, pacing and the messaging
limit (shared/campaigns)."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.campaigns.audience import Member, Variant, assign, materialise
from shared.campaigns.pacing import WINDOW, Bucket, Reach, allowed, campaign_rate

PROMO = {
    "name": "promo",
    "category": "MARKETING",
    "components": [{"type": "BODY", "text": "Hi {{1}}, {{2}} off"}],
}
NOTICE = {"name": "notice", "category": "UTILITY", "components": [{"type": "BODY", "text": "x"}]}


def test_duplicates_opted_out_and_no_identity_are_skipped_with_a_reason() -> None:
    members = [
        Member("391", {"name": "Ann"}),
        Member("392", opted_out=True),
        Member("391", {"name": "Ann"}),
        Member(""),
        Member("393", {"name": "Bo"}),
    ]
    recipients, missing = materialise(
        members, [Variant(PROMO)], {"1": "{{contact.name}}", "2": "5%"}
    )
    assert missing == []
    assert [(r.to, r.skip_reason) for r in recipients] == [
        ("391", None),
        ("392", "opted_out"),
        ("391", "duplicate"),
        ("", "no_identity"),
        ("393", None),
    ]
    assert recipients[0].components == [
        {
            "type": "body",
            "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "5%"}],
        }
    ]


def test_a_utility_template_still_goes_to_an_opted_out_contact() -> None:
    recipients, _ = materialise([Member("392", opted_out=True)], [Variant(NOTICE)], {})
    assert recipients[0].skip_reason is None and recipients[0].components == []


def test_missing_variables_are_reported_per_member() -> None:
    members = [Member("391", {"name": "Ann"}), Member("392", {}, given="392"), Member("393", {})]
    _, missing = materialise(members, [Variant(PROMO)], {"1": "{{contact.name}}", "2": "5%"})
    assert [(m.member, m.names) for m in missing] == [(1, ["1"]), (2, ["1"])]


def test_variants_follow_their_weights_in_every_prefix() -> None:
    assert assign([1, 1], 6) == [0, 1, 0, 1, 0, 1]
    split = assign([3, 1], 400)
    assert split.count(0) == 300 and split.count(1) == 100
    assert abs(split[:10].count(1) - 2.5) <= 1


def test_the_bucket_never_saves_more_than_a_second() -> None:
    bucket = Bucket(rate=10)
    assert bucket.take(0.0, 100) == 1
    assert bucket.take(0.5, 100) == 5
    assert bucket.take(100.0, 100) == 10  # a long pause: one second's burst, no more
    assert bucket.take(100.0, 1) == 0 and 0 < bucket.wait() <= 0.1


def test_campaigns_share_the_number_and_leave_room_for_replies() -> None:
    assert campaign_rate(80, 1) == 64
    assert campaign_rate(80, 2) == 32


def test_the_messaging_limit() -> None:
    oldest = datetime(2026, 1, 1, tzinfo=UTC)
    reach = Reach(limit=3, reached=2, oldest=oldest)
    assert allowed(reach, ["a", "b", "c"], {"b"}) == (["a", "b"], True)
    assert reach.frees_at() == oldest + WINDOW
    assert allowed(Reach(None, 10**6, None), ["a"], set()) == (["a"], False)
    assert allowed(Reach(3, 3, oldest), ["x"], {"x"}) == (["x"], False)


def test_the_tier_meta_reports() -> None:
    from services.campaigns.account import reported_limit

    def change(value: object) -> dict[str, object]:
        return {"field": "business_capability_update", "value": value}

    assert reported_limit(change({"max_daily_conversations_per_business": 2000})) == (True, 2000)
    assert reported_limit(change({"max_daily_conversations_per_business": -1})) == (True, None)
    assert reported_limit(change({"max_phone_numbers_per_business": 2})) == (False, None)
    assert reported_limit(change({"max_daily_conversations_per_business": "250"}))[0] is False
    assert reported_limit("nonsense") == (False, None)


def test_a_template_meta_stopped() -> None:
    from services.campaigns.account import stopped_template

    def change(event: str) -> dict[str, object]:
        value = {"event": event, "message_template_id": 123, "reason": "NONE"}
        return {"field": "message_template_status_update", "value": value}

    assert stopped_template(change("PAUSED")) == ("123", "template_paused")
    assert stopped_template(change("DISABLED")) == ("123", "template_disabled")
    assert stopped_template(change("APPROVED")) is None
    assert stopped_template({"value": {"event": "PAUSED"}}) is None
