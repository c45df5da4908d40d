"""Every word the LLM answerer says to the model lives here, so the prompt can be read and tuned in one place.

The contract with the model is narrow on purpose, because `bot.answering.llm` checks it afterwards: passages come
in numbered `[1]`, `[2]`, ...; the reply is 1–3 sentences that each end with the `[n]` markers of the passages
that support them; and a reply of exactly `NOT_IN_PASSAGES` means the passages do not answer. Whatever the model
writes, the quotes shown to the user are taken from the passages themselves, never from the reply.
"""

from __future__ import annotations

from langchain_core.prompts import ChatPromptTemplate

NOT_IN_PASSAGES = "NOT_IN_PASSAGES"
"""The whole reply when the passages do not contain the answer; the answerer turns it into an abstention."""

SYSTEM_PROMPT = f"""\
You answer questions about a document collection using ONLY the numbered passages you are given.

Rules:
- Use only facts stated in the passages. Do not use outside knowledge, and do not guess.
- Answer in 1 to 3 short sentences, in plain prose (no lists, no headings, no preamble).
- End every sentence with the marker(s) of the passage(s) that support it, before the final period, \
like this: "They met in Davos [1]." or "The talks covered soybeans and rare earths [1][2]."
- Only use markers of passages that exist: [1] up to the highest number shown.
- Never write a sentence without a marker.
- If the passages do not contain the answer, reply with exactly {NOT_IN_PASSAGES} and nothing else.
- The conversation so far, when shown, only tells you what a follow-up question refers to; \
it is not a source of facts."""

USER_TEMPLATE = """\
Passages:

{passages}
{conversation}
Question: {question}

Answer in 1 to 3 sentences, each ending with its [n] marker(s), or reply exactly {sentinel}."""

PASSAGE_TEMPLATE = "[{n}] ({label})\n{text}"
"""One numbered passage: `[1] (title — source)` on its own line, then the passage text verbatim."""

CONVERSATION_TEMPLATE = "\nConversation so far (oldest first):\n{turns}\n"
TURN_TEMPLATE = "User: {question}\nAssistant: {answer}"


def answer_prompt() -> ChatPromptTemplate:
    """The chat prompt: the system rules, then one user message with the passages, conversation and question.

    Variables: `passages`, `conversation` (empty string when there is none) and `question`. Values are inserted
    as they are and never parsed as templates, so braces in a document cannot break the prompt.
    """
    return ChatPromptTemplate.from_messages([("system", SYSTEM_PROMPT), ("human", USER_TEMPLATE)]).partial(
        sentinel=NOT_IN_PASSAGES
    )


def format_passage(n: int, text: str, title: str, source: str, heading: str = "") -> str:
    """`[n] (title > heading — source)` then the text: the label helps the model tell documents apart."""
    name = " > ".join(part for part in (title, heading) if part) or "untitled"
    label = f"{name} — {source}" if source and source != name else name
    return PASSAGE_TEMPLATE.format(n=n, label=label, text=text.strip())


def format_conversation(turns: list[tuple[str, str]]) -> str:
    """The earlier turns as a block for the user message, or "" when this is the first question."""
    if not turns:
        return ""
    lines = "\n".join(TURN_TEMPLATE.format(question=q, answer=a or "(no answer)") for q, a in turns)
    return CONVERSATION_TEMPLATE.format(turns=lines)
