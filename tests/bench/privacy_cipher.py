"""CPU cost of sealing customers' events (`python -m tests.bench.privacy_cipher`): the
mapper's to_row and to_event for a typical inbound text (MessageReceived, with Meta's raw
message) and the conversation's record of it, with and without the cipher, keys cached (the
usual case: a conversation's key is read once per KEY_TTL); and sealing plus opening a
broker body (the transit key: once per hop)."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import events
from shared.crypto.datakeys import KeyRing
from shared.crypto.personal import PersonalCipher, subject_of
from shared.crypto.secrets import MasterKey, new_master_key
from shared.events.conversation import CustomerWrote, conversation_stream
from shared.events.dedup import MessageReceived, inbox_stream
from shared.eventstore import NewEvent
from shared.eventstore.mapper import Mapper

N = 20_000
CID = "106540352242922.393331234567"


def message() -> MessageReceived:
    return MessageReceived(
        conversation_id=CID,
        business_id="biz_1",
        phone_number_id="106540352242922",
        customer="393331234567",
        wa_id="393331234567",
        customer_name="Giulia Verdi",
        wamid="wamid.HBgMMzkzMzMxMjM0NTY3FQIAEhggQTFCMkMzRDRFNUY2",
        type="text",
        timestamp="1764590400",
        message={
            "from": "393331234567",
            "id": "wamid.HBgMMzkzMzMxMjM0NTY3FQIAEhggQTFCMkMzRDRFNUY2",
            "timestamp": "1764590400",
            "type": "text",
            "text": {"body": "Ciao, il mio ordine 4471 non è ancora arrivato, potete aiutarmi?"},
        },
        contact={"profile": {"name": "Giulia Verdi"}, "wa_id": "393331234567"},
    )


def ring() -> KeyRing:
    keys = KeyRing(MasterKey(new_master_key()))
    keys._pseudonym_key = b"p" * 32
    for stream, data in ((inbox_stream(CID), {}), (conversation_stream(CID), {})):
        keys._keep(keys.key_id(subject_of(stream, data) or ""), AESGCM(AESGCM.generate_key(256)))
    return keys


def per_event_us(mapper: Mapper) -> float:
    rows = [
        (inbox_stream(CID), NewEvent(message())),
        (
            conversation_stream(CID),
            NewEvent(CustomerWrote(seq=1, wamid="wamid.x", text="Ciao, il mio ordine 4471")),
        ),
    ]
    started = time.process_time()
    for _ in range(N):
        for stream, new in rows:
            type_, data, meta = mapper.to_row(stream, new)
            mapper.to_event(stream, type_, data, meta)
    return (time.process_time() - started) / (N * len(rows)) * 1e6


def per_hop_us() -> float:
    """Seal and open the body of a CustomerMessage (the largest usual one)."""
    import msgspec

    from shared.crypto.transit import transit_for
    from shared.schemas import CustomerMessage

    transit = transit_for(new_master_key())
    assert transit is not None
    body = msgspec.json.encode(
        CustomerMessage(conversation_id=CID, seq=1, wamid="wamid.x", event=message())
    )
    started = time.process_time()
    for _ in range(N):
        transit.open(transit.seal(body))
    return (time.process_time() - started) / N * 1e6


def main() -> None:
    plain = per_event_us(Mapper(events.ALL, events.UPCASTERS))
    sealed = per_event_us(Mapper(events.ALL, events.UPCASTERS, PersonalCipher(ring())))
    print(f"events: {N * 2} (to_row + to_event each)")
    print(f"plain:  {plain:.1f} us CPU per event")
    print(f"sealed: {sealed:.1f} us CPU per event (+{sealed - plain:.1f} us)")
    print(f"broker: {per_hop_us():.1f} us CPU per hop (a body sealed and opened)")


if __name__ == "__main__":
    main()
