"""Meta's limits on the messages a bot sends (Cloud API interactive messages), and the
language's own bounds. A definition over Meta's limits is refused when it is loaded, since
Meta would refuse the message when it is sent; text made longer by a variable's value is
cut to the limit when rendered."""

from __future__ import annotations

BUTTONS = 3
BUTTON_TITLE = 20
BUTTON_ID = 256
LIST_ROWS = 10  # in all sections together
LIST_SECTIONS = 10
ROW_TITLE = 24
ROW_DESCRIPTION = 72
ROW_ID = 200
SECTION_TITLE = 24
LIST_BUTTON = 20
CTA_TEXT = 20
HEADER = 60
FOOTER = 60
INTERACTIVE_BODY = 1024
LIST_BODY = 4096
TEXT_BODY = 4096

# What the language allows.
MAX_LENGTH = 4096  # a flow step's max_length, at most (WhatsApp's own text limit)
MAX_RETRIES = 10
REPLIES = 5  # messages in one reply
REGEX_SCAN = 500  # characters of a message that rules' regexes search (see safe_regex)
LLM_TOKENS = 4096
LLM_TIMEOUT = 120.0
LLM_HISTORY = 50
