"""Final-answer extraction for suite-mode grading (math and GPQA); pure text work, no math-verify import.

Everything here reads only the **answer section** (the text after the last ``</think>``; the caller passes the full
text with ``has_end=False`` when there is no think end). Nothing reaches into the thinking.

Math (:func:`math_candidates`): the ways a model states a final answer, in order of preference; the grader parses
the candidates in this order with math-verify and grades the first that parses (``detail["path"]``):

1. ``boxed``  -- the last brace-balanced ``\\boxed{...}`` / ``\\fbox{...}``;
2. ``statement`` -- the last "final answer is ...", "answer is ...", "Answer: ..." statement (markdown removed),
   up to the end of its line (a line that ends at the anchor continues on the next non-empty line, for a display
   formula below "The final answer is:");
3. ``bold`` -- the last ``**...**`` span that contains a digit or math;
4. ``math`` -- the last math expression of the section: ``$$...$$``, ``\\[...\\]``, ``\\(...\\)`` or ``$...$``,
   whichever ends last;
5. ``number`` -- a trailing number: the last number of the last non-empty line, followed by at most a few words.

Rules 3-5 need a think end: in a text without one (truncated) they would read the thinking. A candidate that names
two different answers joined by "or" (``$12$ or $13$``, ``\\boxed{3} or \\boxed{5}``, ``\\boxed{3 \\text{ or } 5}``)
is a **hedge** and is graded wrong.

GPQA (:func:`gpqa_letters`): markdown emphasis removed, letters A-D, the first rule that matches wins, each taking
its last match: 1 ``\\boxed{X}`` (``\\text{}``, ``X:``/``X)``/``X.`` forms); 2 ``"answer": "X"``; 3 ``Answer: X``;
4 ``(answer|choice|option) is X``; 5 ``I choose X``; 6 ``(X) is the correct answer``; 7 a trailing parenthesised
letter ending the section (``the best match is (C).``); 8 a last line that is only a letter (``**C**``).
A rule whose answer names two or more different options (``Answer: A or C``, ``{"answer": "A, C"}``,
``\\boxed{A, C}``) returns all of them: the grader marks that a hedge, graded wrong. Never a stray capital letter.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

THINK_END = "</think>"  # the one definition: math, GPQA and code grading and the judge import it


def answer_section(text: str) -> tuple[str, bool]:
    """(text after the last ``</think>``, True) or (the full text, False) when there is no think end."""
    pos = text.rfind(THINK_END)
    if pos < 0:
        return text, False
    return text[pos + len(THINK_END):], True


# ------------------------------------------------------------------------------------------------ boxes

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of all top-level brace-balanced ``\\boxed{...}`` / ``\\fbox{...}``; unclosed skipped."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    while True:
        m = _BOXED_RE.search(text, pos)
        if m is None:
            return out
        depth, i = 1, m.end()
        while i < len(text) and depth:
            c = text[i]
            if c == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
                i += 2  # escaped brace \{ or \} does not count
                continue
            depth += c == "{"
            depth -= c == "}"
            i += 1
        if depth == 0:
            out.append((m.start(), i, text[m.end(): i - 1]))
            pos = i
        else:
            pos = m.end()


def boxed_contents(text: str) -> list[str]:
    """Contents of all top-level, brace-balanced boxes in order."""
    return [c for _, _, c in boxed_spans(text)]


def last_boxed(text: str) -> str | None:
    """Content of the last top-level brace-balanced box, or None."""
    boxes = boxed_spans(text)
    return boxes[-1][2] if boxes else None


# ------------------------------------------------------------------------------------------------ math

@dataclass(frozen=True)
class Candidate:
    """One place a final answer may be stated. ``latex``: content to grade as ``$text$``; otherwise plain text
    (math-verify's unanchored LaTeX + expression extraction runs on it). ``hedge``: two answers joined by "or"."""

    path: str
    text: str
    latex: bool
    hedge: bool = False


# "or" between two alternatives, in text or in LaTeX (\text{ or }, \quad\text{or}\quad, \mbox{or})
_OR = r"(?:\\(?:text|mbox|textrm|mathrm)\s*\{\s*or\s*\}|\bor\b|\\lor\b|\\vee\b)"
_OR_RE = re.compile(_OR)
_HEDGE_GAP = re.compile(r"^[\s,;:.$]*(?:\\[,;!]|\\quad|\\qquad|\s)*" + _OR + r"[\s,;:$]*(?:\\quad|\\qquad|\s)*$")
_MATH_RE = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<![\\$])\$(?!\$)((?:\\\$|[^$])+?)(?<!\\)\$",
                      re.S)
_ANCHOR_RE = re.compile(r"(?i)(?:final\s+answer|\banswer)\s*(?:is\s*(?:therefore|thus)?\s*:?|:|=)")
_BOLD_RE = re.compile(r"\*\*(.+?)\*\*", re.S)
_NUMBER_RE = re.compile(r"-?(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])|-?(?<![\w.])\d+(?:\.\d+)?|-?\.\d+")
_TRAILER_RE = re.compile(r"^[^\d$\\]{0,40}$")
_SENTENCE_END = re.compile(r"(?<!\d)\.(?:\s|$)|(?<=\d)\.(?:\s+[A-Z]|\s*$)")


def math_segments(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of the math expressions in ``text`` (``$$``, ``\\[``, ``\\(``, ``$``), in order."""
    out = []
    for m in _MATH_RE.finditer(text):
        content = next(g for g in m.groups() if g is not None)
        if content.strip():
            out.append((m.start(), m.end(), content))
    return out


def _two_alternatives(segs: list[tuple[int, int, str]], text: str) -> bool:
    """The last two spans are different and joined by "or" (a hedge)."""
    if len(segs) < 2:
        return False
    (_, e1, c1), (s2, _, c2) = segs[-2], segs[-1]
    gap = text[e1:s2]
    return len(gap) <= 80 and _norm_ws(c1) != _norm_ws(c2) and bool(_HEDGE_GAP.match(gap))


def _norm_ws(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _inner_or(content: str) -> bool:
    """``3 \\text{ or } 5`` inside one expression: two alternatives."""
    parts = _OR_RE.split(content)
    return len(parts) >= 2 and all(re.search(r"[\w\\]", p) for p in parts)


def _statement_candidate(path: str, s: str) -> Candidate | None:
    """The answer in a statement's text: its last math expression, else the text itself up to the sentence end."""
    segs = math_segments(s)
    if segs:
        c = segs[-1][2]
        return Candidate(path, c, True, _two_alternatives(segs, s) or _inner_or(c))
    s = s.strip()
    m = _SENTENCE_END.search(s)
    if m:
        s = s[: m.start()]
    s = s.strip(" \t*_:;,")
    if not re.search(r"\d|\\", s):
        return None
    nums = _NUMBER_RE.findall(s)
    hedge = len(set(nums)) >= 2 and bool(re.search(r"\d\s*(?:,\s*)?" + _OR + r"\s*-?\d", s))
    return Candidate(path, s, False, hedge)


def math_candidates(section: str, has_end: bool = True) -> list[Candidate]:
    """Candidates in order of preference (module docstring); rules 3-5 only with a think end."""
    out: list[Candidate] = []
    boxes = boxed_spans(section)
    if boxes:
        c = boxes[-1][2]
        out.append(Candidate("boxed", c, True, _two_alternatives(boxes, section) or _inner_or(c)))
    plain = section.replace("**", "").replace("__", "")
    anchors = list(_ANCHOR_RE.finditer(plain))
    if anchors:
        rest = plain[anchors[-1].end():]
        line, _, after = rest.partition("\n")
        if not line.strip():   # "The final answer is:" then the formula on the next line
            line = next((ln for ln in after.split("\n") if ln.strip()), "")
            if line.strip().startswith("$$") and "$$" not in line.strip()[2:]:
                line = after[after.find("$$"):]   # a display formula spread over several lines
                end = line.find("$$", 2)
                line = line[: end + 2] if end > 0 else line
        cand = _statement_candidate("statement", line)
        if cand is not None:
            out.append(cand)
    if not has_end:
        return out
    bolds = [m.group(1) for m in _BOLD_RE.finditer(section) if re.search(r"\d|\$|\\", m.group(1))]
    if bolds:
        cand = _statement_candidate("bold", bolds[-1])
        if cand is not None:
            out.append(cand)
    segs = math_segments(section)
    if segs:
        c = segs[-1][2]
        out.append(Candidate("math", c, True, _two_alternatives(segs, section) or _inner_or(c)))
    lines = [ln for ln in plain.strip().split("\n") if ln.strip()]
    if lines:
        last = lines[-1]
        nums = list(_NUMBER_RE.finditer(last))
        if nums and _TRAILER_RE.match(last[nums[-1].end():]):
            spans = [(m.start(), m.end(), m.group(0)) for m in nums]
            out.append(Candidate("number", nums[-1].group(0), False, _two_alternatives(spans, last)))
    return out


# ------------------------------------------------------------------------------------------------ GPQA

_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|textit|mbox)\s*\{(.*)\}$", re.S)
_LETTER_IN_BOX = re.compile(r"^\(?([A-D])\)?(?:[.:)].*)?$", re.S)
_SEP = r"\s*(?:,|/|&|;|\band/or\b|\bor\b|\band\b)\s*"
_ONE = r"\(?[A-D]\)?(?![A-Za-z0-9])"
_LIST = rf"(\(?[A-D]\)?(?:{_SEP}\(?[A-D]\)?)+)(?![A-Za-z0-9])(?=\s*(?:$|[.!;\"'}}\)\]\n]))"
_LETTERS = re.compile(r"[A-D]")
_RULES = (
    ("json_answer", r"[\"'](?i:answer)[\"']\s*:\s*[\"']?\s*"),
    ("answer_colon", r"(?<![A-Za-z])(?i:answer|correct\s+option|correct\s+choice)\s*[:\u2014\u2013]\s*"),
    ("answer_is", r"(?<![A-Za-z])(?i:answer|choice|option)\s+is\s*:?\s*"),
    ("choose", r"(?<![A-Za-z])(?i:choose|pick|select|go\s+with)\s+(?:(?i:option|choice)\s+)?"),
)
_GPQA_RULES = [(name, re.compile(anchor + "(?:" + _LIST + "|(" + _ONE + "))")) for name, anchor in _RULES]
_CORRECT_IS = re.compile(r"(?<![A-Za-z])(?:(?i:option|choice)\s+)?\(?([A-D])\)?\s+(?i:is\s+(?:the\s+)?"
                         r"(?:correct|right|best)\b)")
_TRAILING_PAREN = re.compile(r"\(([A-D])\)[\s.!)\]$}]*$")
_LETTER_LINE = re.compile(r"(?:^|\n)[ \t]*\(?([A-D])\)?[.!]?[ \t]*$")


def _box_letters(content: str) -> list[str]:
    s = content.strip()
    while True:
        m = _TEXT_WRAP.match(s)
        if not m:
            break
        s = m.group(1).strip()
    m = _LETTER_IN_BOX.match(s)
    if m and not re.match(r"^\(?[A-D]\)?" + _SEP + r"\(?[A-D]\)?", s):
        return [m.group(1)]
    if re.fullmatch(r"\(?[A-D]\)?(?:" + _SEP + r"\(?[A-D]\)?)+\.?", s):
        return sorted(set(_LETTERS.findall(s)))
    return []


def gpqa_letters(section: str) -> tuple[list[str], str]:
    """(letters named by the first rule that matches, rule name); ``([], "none")`` when nothing matches.
    More than one letter means a hedge."""
    section = section.replace("*", "").replace("_", "")
    boxes = boxed_contents(section)
    if boxes:
        letters = _box_letters(boxes[-1])
        if letters:
            return letters, "boxed"
    for rule, pat in _GPQA_RULES:
        found = list(pat.finditer(section))
        if found:
            m = found[-1]
            group = m.group(1) or m.group(2)
            return sorted(set(_LETTERS.findall(group))), rule
    found = list(_CORRECT_IS.finditer(section))
    if found:
        return [found[-1].group(1)], "correct_is"
    tail = section.rstrip()
    for rule, pat in (("trailing_paren", _TRAILING_PAREN), ("letter_line", _LETTER_LINE)):
        m = pat.search(tail)
        if m:
            return [m.group(1)], rule
    return [], "none"
