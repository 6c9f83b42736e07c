"""Campaigns' pure rules, used by the api (the audience at start) and the campaigns service
(pacing): no I/O, unit-tested with no broker and no database."""
