"""The bot definition language (docs/bot.md): parse, validate, match, step a flow. Pure,
no I/O: used by the conversation (to run a bot) and the api (to validate and simulate).

    bot = load(text, revision=3)                 # or problems(text) -> [(path, message)]
    outcome = respond(bot, state, turn, contact, now)
    if outcome.llm:                              # ask the LLM, then
        outcome = finish(outcome, answer_or_none)
    send(outcome.replies); apply(outcome.actions); keep(outcome.state)
"""

from shared.bot.engine import expired, respond
from shared.bot.llm import finish
from shared.bot.loader import Bot, load, problems
from shared.bot.problems import InvalidDefinition, Problem
from shared.bot.runtime_types import (
    Action,
    BotState,
    Contact,
    Emit,
    Handoff,
    LLMRequest,
    OptIn,
    OptOut,
    Outcome,
    SetAttribute,
    Tag,
    Turn,
    Untag,
)
from shared.bot.simulate import SIMULATED_LLM_ANSWER, Simulation, SimulationError, simulate

__all__ = [
    "SIMULATED_LLM_ANSWER",
    "Action",
    "Bot",
    "BotState",
    "Contact",
    "Emit",
    "Handoff",
    "InvalidDefinition",
    "LLMRequest",
    "OptIn",
    "OptOut",
    "Outcome",
    "Problem",
    "SetAttribute",
    "Simulation",
    "SimulationError",
    "Tag",
    "Turn",
    "Untag",
    "expired",
    "finish",
    "load",
    "problems",
    "respond",
    "simulate",
]
