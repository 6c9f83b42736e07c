-- Notes about a contact, written by the business's people (services/api/notes.py): a read
-- model like api_contacts (services/api/projections/contacts.py), rebuilt from the sealed
-- ContactNoteAdded / ContactNoteDeleted events and deleted with the contact at an erasure.
CREATE TABLE IF NOT EXISTS api_contact_notes (
    note_id       text        PRIMARY KEY,
    business_id   text        NOT NULL,
    contact_id    text        NOT NULL,
    text          text        NOT NULL,
    author        text        NOT NULL,  -- a console user's id or an API key's id
    created_at    timestamptz NOT NULL,
    sort_position bigint      NOT NULL   -- the event that made it: newest first
);
CREATE INDEX IF NOT EXISTS api_contact_notes_by_contact
    ON api_contact_notes (contact_id, sort_position DESC);
