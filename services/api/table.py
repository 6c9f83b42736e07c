"""Every route of `/v1`, in one table: what the app serves and what the OpenAPI document
says are the same list."""

from __future__ import annotations

from services.api import (
    access,
    analytics,
    bot,
    business,
    campaign_audience,
    campaigns,
    handoff,
    handoff_settings,
    media,
    notes,
    platform,
    privacy,
    sending,
    templates,
    uploads,
    users,
    webhooks,
)
from services.api import schemas as s
from services.api.messages import SendMessage
from services.api.routes import ADMIN, PAGING, WRITERS, Query, Route

_STATE = Query("state", "bot, waiting, agent or closed", {"enum": list(business.STATES)})
_FILTERS = (
    _STATE,
    Query("assignee", "a user id"),
    Query("tag", "a tag of the contact"),
    Query("phone_number_id", "one of the business's numbers"),
    Query("contact_id", "one contact's conversations"),
)
_CONTACT_FILTERS = (
    Query("tag", "a tag of the contact"),
    Query("q", "a case-insensitive part of the name, wa_id or user_id"),
)
_B = "/v1/businesses/{business_id}"
_BOT = "/v1/numbers/{phone_number_id}/bot"
# A definition (docs/bot.md): YAML text, or the same as a JSON object.
_DEFINITION = {
    "application/yaml": {"schema": {"type": "string"}},
    "application/json": {"schema": {"type": "object"}},
}
# A file as the body, its Content-Type one Meta takes (services/api/uploads.py).
_FILE = {mime: {"schema": {"type": "string", "format": "binary"}} for mime in uploads.KIND_OF}
_NUMBER = Query("phone_number_id", "the number to send it from (needed with several)")
_W = "/v1/webhooks"
_E = _W + "/endpoints/{id}"
_DELIVERY_STATE = Query(
    "state", "pending, succeeded, dead or cancelled", {"enum": list(webhooks.STATES)}
)
_OF_ENDPOINT = Query("endpoint_id", "only this endpoint's")

ROUTES: tuple[Route, ...] = (
    # --- the platform token ------------------------------------------------------------
    Route(
        "POST", "/v1/businesses", platform.create_business, "Create a business", "platform",
        request=s.CreateBusiness, status=201, answer=s.Business, errors=(400, 422),
        idempotent=True,
    ),
    Route(
        "GET", "/v1/businesses", platform.list_businesses, "List the businesses", "platform",
        answer=s.BusinessList, errors=(422,), query=PAGING,
    ),
    Route(
        "GET", _B, platform.get_business, "A business", "platform",
        answer=s.Business, errors=(404,),
    ),
    Route(
        "POST", _B + "/numbers", platform.register_number, "Register a number", "platform",
        request=s.CreateNumber, status=201, answer=s.Number, errors=(400, 404, 409, 422),
        idempotent=True,
    ),
    Route(
        "GET", _B + "/numbers", platform.list_business_numbers, "A business's numbers",
        "platform", answer=s.NumberList, errors=(404, 422), query=PAGING,
    ),
    Route(
        "GET", _B + "/numbers/{phone_number_id}", platform.get_business_number,
        "A business's number", "platform", answer=s.Number, errors=(404,),
    ),
    Route(
        "PATCH", _B + "/numbers/{phone_number_id}", platform.update_number,
        "Change a number (settings, token, app secret)", "platform",
        request=s.PatchNumber, answer=s.Number, errors=(400, 404, 409, 422),
    ),
    Route(
        "POST", _B + "/api-keys", platform.issue_business_key, "Issue an API key", "platform",
        request=s.CreateApiKey, status=201, answer=s.ApiKeyCreated, errors=(400, 404, 422),
        idempotent=True,
    ),
    Route(
        "GET", _B + "/api-keys", platform.list_business_keys, "A business's API keys",
        "platform", answer=s.ApiKeyList, errors=(404, 422), query=PAGING,
    ),
    Route(
        "DELETE", _B + "/api-keys/{key_id}", platform.revoke_business_key,
        "Revoke an API key", "platform", status=204, errors=(404,),
    ),
    # --- a business key ----------------------------------------------------------------
    Route(
        "POST", "/v1/api-keys", platform.issue_own_key, "Issue an API key", "key",
        roles=ADMIN, request=s.CreateApiKey, status=201, answer=s.ApiKeyCreated,
        errors=(400, 422), idempotent=True,
    ),
    Route(
        "GET", "/v1/api-keys", platform.list_own_keys, "The business's API keys", "key",
        roles=ADMIN, answer=s.ApiKeyList, errors=(422,), query=PAGING,
    ),
    Route(
        "DELETE", "/v1/api-keys/{key_id}", platform.revoke_own_key, "Revoke an API key", "key",
        roles=ADMIN, status=204, errors=(404,),
    ),
    Route(
        "GET", "/v1/numbers", business.list_numbers, "The business's numbers", "key",
        answer=s.NumberList, errors=(422,), query=PAGING,
    ),
    Route(
        "GET", "/v1/numbers/{phone_number_id}", business.get_number, "A number", "key",
        answer=s.Number, errors=(404,),
    ),
    Route(
        "POST", "/v1/messages", sending.send, "Send a message", "key", roles=WRITERS,
        request=SendMessage, status=202, answer=s.MessageAccepted,
        errors=(400, 404, 409, 422, 429, 503), idempotent=True,
    ),
    Route(
        "POST", "/v1/media", uploads.upload,
        "Upload a file to Meta for a number (the body, with its Content-Type): its media id",
        "key", roles=WRITERS, body=_FILE, status=201, answer=uploads.Uploaded,
        errors=(403, 404, 413, 415, 422, 503), query=(_NUMBER,),
    ),
    Route(
        "GET", "/v1/messages/{message_id}", business.get_message,
        "A message sent through the api, and its status", "key",
        answer=s.MessageView, errors=(404, 422),
    ),
    Route(
        "GET", "/v1/conversations", business.list_conversations, "Conversations, newest first",
        "key", answer=s.ConversationList, errors=(404, 422), query=(*_FILTERS, *PAGING),
    ),
    Route(
        "GET", "/v1/conversations/{conversation_id}", business.get_conversation,
        "A conversation", "key", answer=s.Conversation, errors=(404, 422),
    ),
    Route(
        "GET", "/v1/conversations/{conversation_id}/messages",
        business.list_conversation_messages, "A conversation's messages, oldest first", "key",
        answer=s.ConversationMessageList, errors=(404, 422), query=PAGING,
    ),
    Route(
        "GET", "/v1/conversations/{conversation_id}/messages/{message_id}/media",
        media.get_media, "A customer's file (the `url` of a message's media)", "key",
        binary=True, errors=(404, 409),
    ),
    Route(
        "GET", "/v1/contacts", business.list_contacts, "Contacts, newest first", "key",
        answer=s.ContactList, errors=(422,), query=(*_CONTACT_FILTERS, *PAGING),
    ),
    Route(
        "POST", "/v1/contacts", business.create_contact, "Import a contact", "key",
        roles=WRITERS, request=s.CreateContact, status=201, answer=s.Contact,
        errors=(400, 409, 422), idempotent=True,
    ),
    Route(
        "GET", "/v1/contacts/{contact_id}", business.get_contact, "A contact", "key",
        answer=s.Contact, errors=(404, 422),
    ),
    Route(
        "PATCH", "/v1/contacts/{contact_id}", business.update_contact,
        "Change a contact's tags, attributes or opt-out", "key", roles=WRITERS,
        request=s.PatchContact, answer=s.Contact, errors=(400, 404, 422),
    ),
    Route(
        "GET", "/v1/contacts/{contact_id}/notes", notes.list_notes,
        "A contact's notes, newest first", "key",
        answer=s.NoteList, errors=(404, 422), query=PAGING,
    ),
    Route(
        "POST", "/v1/contacts/{contact_id}/notes", notes.add_note,
        "Write a note about a contact", "key", roles=WRITERS,
        request=s.CreateNote, status=201, answer=s.Note, errors=(400, 404, 422),
    ),
    Route(
        "DELETE", "/v1/contacts/{contact_id}/notes/{note_id}", notes.delete_note,
        "Delete a note (its author or an admin)", "key", roles=WRITERS,
        status=204, errors=(403, 404),
    ),
    Route(
        "PUT", _BOT, bot.put_bot, "Publish the number's bot definition (a new version)",
        "key", roles=ADMIN, body=_DEFINITION, answer=s.BotVersion,
        errors=(400, 404, 409, 413, 415, 422),
    ),
    Route(
        "GET", _BOT, bot.get_bot, "The number's published bot definition and version",
        "key", roles=ADMIN, answer=s.BotDefinition, errors=(404, 422),
    ),
    Route(
        "POST", _BOT + "/simulate", bot.simulate_bot,
        "Play messages against the bot: its replies and state, nothing sent or recorded",
        "key", roles=ADMIN, request=s.SimulateBot, answer=s.BotSimulation,
        errors=(400, 404, 409, 422),
    ),
    Route(
        "GET", "/v1/analytics", analytics.get_analytics,
        "A period's figures: messages per day, first responses, handoffs, states, campaigns",
        "key", answer=analytics.Analytics, errors=(404, 422, 503), query=analytics.QUERY,
    ),
    # --- handoff (handoff.py) ------------------------------------------------------------
    Route(
        "POST", "/v1/conversations/{conversation_id}/handoff", handoff.hand_off,
        "A person takes the conversation over (waiting with no assignee)", "key",
        roles=WRITERS, request=handoff.Handoff, answer=s.Conversation,
        errors=(400, 404, 422, 503),
    ),
    Route(
        "POST", "/v1/conversations/{conversation_id}/release", handoff.release,
        "Back to the bot: it answers the next customer message", "key", roles=WRITERS,
        request=handoff.NoBody, answer=s.Conversation, errors=(400, 404, 503),
    ),
    Route(
        "POST", "/v1/conversations/{conversation_id}/close", handoff.close,
        "Close the conversation (the customer's next message reopens it with the bot)",
        "key", roles=WRITERS, request=handoff.NoBody, answer=s.Conversation,
        errors=(400, 404, 503),
    ),
    Route(
        "POST", "/v1/conversations/{conversation_id}/read", handoff.mark_read,
        "Mark the conversation read (unread 0)", "key", roles=WRITERS,
        request=handoff.NoBody, answer=s.Conversation, errors=(400, 404),
    ),
    # --- console users (users.py) --------------------------------------------------------
    Route(
        "POST", "/v1/users", users.create_user, "Add a console user", "key", roles=ADMIN,
        request=users.CreateUser, status=201, answer=users.User, errors=(400, 409, 422),
        idempotent=True,
    ),
    Route(
        "GET", "/v1/users", users.list_users, "The business's console users", "key",
        roles=ADMIN, answer=users.UserList, errors=(422,), query=PAGING,
    ),
    Route(
        "PATCH", "/v1/users/{user_id}", users.update_user,
        "Change a console user's name, role or language (the last admin stays one)", "key",
        roles=ADMIN, request=users.PatchUser, answer=users.User, errors=(400, 404, 409, 422),
    ),
    Route(
        "DELETE", "/v1/users/{user_id}", users.delete_user,
        "Remove a console user (their sessions end at once)", "key", roles=ADMIN,
        status=204, errors=(404,),
    ),
    # --- webhooks to CRMs (the relay's admin API, scoped to the business) ----------------
    Route(
        "POST", _W + "/endpoints", webhooks.create_endpoint,
        "Register a CRM endpoint (its secret is shown here and at rotation only)", "key",
        roles=ADMIN, request=s.CreateWebhookEndpoint, status=201,
        answer=s.WebhookEndpointCreated, errors=(400, 422), idempotent=True,
    ),
    Route(
        "GET", _W + "/endpoints", webhooks.list_endpoints, "The CRM endpoints, newest first",
        "key", roles=ADMIN, answer=s.WebhookEndpointList, errors=(422,), query=PAGING,
    ),
    Route(
        "GET", _E, webhooks.get_endpoint, "A CRM endpoint, with its deliveries by state",
        "key", roles=ADMIN, answer=s.WebhookEndpoint, errors=(404,),
    ),
    Route(
        "PATCH", _E, webhooks.update_endpoint, "Change an endpoint's URL, description or events",
        "key", roles=ADMIN, request=s.PatchWebhookEndpoint, answer=s.WebhookEndpoint,
        errors=(400, 404, 409, 422),
    ),
    Route(
        "DELETE", _E, webhooks.delete_endpoint,
        "Delete an endpoint (its pending deliveries are cancelled)", "key", roles=ADMIN,
        status=204, errors=(404, 409),
    ),
    Route(
        "POST", _E + "/rotate-secret", webhooks.rotate_secret,
        "A new signing secret (the previous one keeps signing for a grace period)", "key",
        roles=ADMIN, answer=s.WebhookSecretRotated, errors=(404, 409),
    ),
    Route(
        "POST", _E + "/disable", webhooks.disable_endpoint, "Stop sending to an endpoint",
        "key", roles=ADMIN, request=s.DisableWebhookEndpoint, answer=s.WebhookEndpoint,
        errors=(400, 404, 409, 422),
    ),
    Route(
        "POST", _E + "/enable", webhooks.enable_endpoint, "Send to an endpoint again", "key",
        roles=ADMIN, answer=s.WebhookEndpoint, errors=(404, 409),
    ),
    Route(
        "POST", _E + "/replay-dead", webhooks.replay_dead,
        "Send an endpoint's dead deliveries again", "key", roles=ADMIN, status=202,
        answer=s.Replayed, errors=(404,),
    ),
    Route(
        "POST", _E + "/replay-since", webhooks.replay_since,
        "Send again every event of the business recorded in a period", "key", roles=ADMIN,
        request=s.ReplaySince, status=202, answer=s.Replayed, errors=(400, 404, 422),
    ),
    Route(
        "GET", _E + "/deliveries", webhooks.list_endpoint_deliveries,
        "An endpoint's deliveries, newest first", "key", roles=ADMIN,
        answer=s.WebhookDeliveryList, errors=(404, 422), query=(_DELIVERY_STATE, *PAGING),
    ),
    Route(
        "GET", _W + "/deliveries/{delivery_id}", webhooks.get_delivery,
        "A delivery, with the exact body sent", "key", roles=ADMIN,
        answer=s.WebhookDelivery, errors=(404,),
    ),
    Route(
        "POST", _W + "/deliveries/{delivery_id}/replay", webhooks.replay_delivery,
        "Send a delivery again (the same webhook-id)", "key", roles=ADMIN, status=202,
        answer=s.WebhookDelivery, errors=(404,),
    ),
    Route(
        "GET", _W + "/dead-letters", webhooks.list_dead_letters,
        "Deliveries given up after their last attempt, newest first", "key", roles=ADMIN,
        answer=s.WebhookDeliveryList, errors=(404, 422), query=(_OF_ENDPOINT, *PAGING),
    ),
    Route(
        "GET", _W + "/event-types", webhooks.event_types,
        "The events an endpoint can subscribe to", "key", roles=ADMIN,
        answer=s.EventTypeList, errors=(422,),
    ),
    *templates.ROUTES,
    *campaign_audience.ROUTES,
    *campaigns.ROUTES,
    # --- privacy (docs/privacy.md) -------------------------------------------------------
    Route(
        "GET", "/v1/contacts/{contact_id}/export", privacy.export,
        "Everything kept about a contact (a zip with their media with media=1)", "key",
        roles=ADMIN, answer=s.ContactExport, errors=(404, 422),
        query=(Query("media", "1: a zip holding export.json and the media files",
                     {"enum": ["0", "1"]}),),
    ),
    Route(
        "GET", "/v1/contacts/{contact_id}/accesses", access.list_accesses,
        "Who read the contact's data, newest first (one a minute per actor and kind)", "key",
        roles=ADMIN, answer=s.ContactAccessList, errors=(404, 422),
    ),
    Route(
        "POST", "/v1/contacts/{contact_id}/erase", privacy.erase,
        "Erase a contact: everything they wrote or sent, their number and name", "key",
        roles=ADMIN, status=202, answer=s.ErasureAccepted, errors=(404, 422),
    ),
    Route(
        "GET", "/v1/erasures/{erasure_id}", privacy.get_erasure, "An erasure's progress",
        "key", roles=ADMIN, answer=s.Erasure, errors=(404, 422),
    ),
    Route(
        "GET", "/v1/handoff/settings", handoff_settings.get_settings,
        "The business's handoff settings (the idle hand-back time)", "key",
        answer=s.HandoffSettings, errors=(422,),
    ),
    Route(
        "PUT", "/v1/handoff/settings", handoff_settings.put_settings,
        "Set how long a person's conversation may stay idle before the bot has it again",
        "key", roles=ADMIN, request=s.PutHandoffSettings, answer=s.HandoffSettings,
        errors=(400, 422),
    ),
    Route(
        "GET", "/v1/privacy/retention", privacy.get_retention, "The business's retention",
        "key", roles=ADMIN, answer=s.Retention, errors=(422,),
    ),
    Route(
        "PUT", "/v1/privacy/retention", privacy.put_retention,
        "Set the business's retention: contacts silent that long are erased", "key",
        roles=ADMIN, request=s.PutRetention, answer=s.Retention, errors=(400, 422),
    ),
)  # fmt: skip
