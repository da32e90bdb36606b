"""Automatic classification of a request's free text (Chinese and English) into the company's seven classes of help.

The term dictionary is configuration (services/intake/classification.yml), handed to `Classifier` as already-parsed
data. Chinese text is segmented with jieba so that a term only matches whole words ("120" is not found inside
"1202", "火" is not found inside "火车"); the dictionary's own terms are added to jieba's dictionary so that they come
out of the segmenter as words.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.common.domain import DomainError

CATEGORIES: tuple[str, ...] = (
    "emergency_medical", "repair", "complaint", "consultation", "security_incident", "disaster", "other",
)
SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    "repair": ("plumbing", "electrical", "lift", "door_window", "roof_wall_leak", "public_facility", "gas", "other"),
    "complaint": ("facility", "service_attitude", "service_quality", "sudden_event"),
    "security_incident": ("theft", "fight", "robbery", "poisoning", "traffic_accident"),
    "disaster": ("typhoon", "flood", "fire"),
}
# Highest first: the order is used to compare priorities.
PRIORITIES: tuple[str, ...] = ("emergency", "urgent", "normal", "planned")
VALIDITIES: tuple[str, ...] = ("valid", "help_seeking", "enquiry", "venting")
COMMUNICATIVE: tuple[str, ...] = ("help_seeking", "enquiry", "venting")

_RANK = {p: len(PRIORITIES) - i for i, p in enumerate(PRIORITIES)}


def priority_rank(priority: str) -> int:
    """Bigger is more pressing; usable as a sort key."""
    return _RANK[priority]


@dataclass(frozen=True)
class Classification:
    """What a request is about. `source` is "auto" for the classifier's verdict, "agent" for an override."""

    category: str
    subcategory: str | None
    priority: str
    emergency: bool
    confidence: float
    matched_terms: tuple[str, ...] = ()
    validity: str | None = None
    source: str = "auto"

    @property
    def complaint_valid(self) -> bool | None:
        if self.category != "complaint" or self.validity is None:
            return None
        return self.validity == "valid"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["matched_terms"] = list(self.matched_terms)
        d["complaint_valid"] = self.complaint_valid
        return d


def validate_classification(category: str, subcategory: str | None, priority: str,
                            validity: str | None = None) -> None:
    """Refuse a class/subclass/priority/validity outside the company's taxonomy, naming the field."""
    if category not in CATEGORIES:
        raise DomainError(f"unknown class {category!r}", field="category", code="unknown_category")
    if subcategory is not None and subcategory not in SUBCATEGORIES.get(category, ()):
        raise DomainError(f"{subcategory!r} is not a subclass of {category}", field="subcategory",
                          code="unknown_subcategory")
    if priority not in PRIORITIES:
        raise DomainError(f"unknown priority {priority!r}", field="priority", code="unknown_priority")
    if validity is not None:
        if validity not in VALIDITIES:
            raise DomainError(f"unknown complaint validity {validity!r}", field="validity", code="unknown_validity")
        if category != "complaint":
            raise DomainError("only a complaint has a validity", field="validity", code="validity_not_complaint")


def override_classification(auto: Classification, *, category: str, subcategory: str | None = None,
                            priority: str | None = None, emergency: bool | None = None,
                            validity: str | None = None) -> Classification:
    """An agent's classification. Unspecified priority/emergency fall back to the automatic verdict when the class
    stays the same; a complaint without a stated validity counts as valid (the agent chose to track it)."""
    same_class = category == auto.category
    if priority is None:
        priority = auto.priority if same_class else "normal"
    if emergency is None:
        emergency = priority == "emergency"
    if category == "complaint" and validity is None:
        validity = auto.validity if same_class and auto.validity else "valid"
    if category != "complaint":
        validity = None
    validate_classification(category, subcategory, priority, validity)
    if emergency and priority != "emergency":
        raise DomainError("an emergency must have emergency priority", field="priority", code="emergency_priority")
    return Classification(category=category, subcategory=subcategory, priority=priority, emergency=emergency,
                          confidence=1.0, matched_terms=(), validity=validity, source="agent")


# --- the classifier -------------------------------------------------------------------------------------------------

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_ASCII_WORD = re.compile(r"^[a-z0-9][a-z0-9'\-]*$")
_PUNCT_ONLY = re.compile(r"^[\W_]+$", re.UNICODE)


def _stem(token: str) -> str:
    # A crude English plural fold ("pipes" == "pipe"), applied to text and terms alike so they always agree.
    if _ASCII_WORD.match(token) and len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


@dataclass(frozen=True)
class _Term:
    text: str
    tokens: tuple[str, ...]
    weight: float
    # where the term counts: ("class", category, subcategory|None) / ("rule", index) / ("validity", kind)
    target: tuple[Any, ...]


@dataclass(frozen=True)
class _Rule:
    name: str
    priority: str
    emergency: bool
    category: str | None
    subcategory: str | None


@dataclass(frozen=True)
class _Node:
    priority: str | None
    emergency: bool


class Classifier:
    """Built once from the parsed dictionary; jieba is loaded on the first `classify` call, not before."""

    def __init__(self, dictionary: Mapping[str, Any], segmentation_dictionary: str | None = None):
        """`segmentation_dictionary`: a jieba word-frequency file to segment with instead of jieba's full one
        (the service passes a bounded one to stay within its memory budget; see adapters/dictionary.py)."""
        self._dictionary = dictionary
        self._segmentation_dictionary = segmentation_dictionary
        self._terms: list[_Term] = []
        self._rules: list[_Rule] = []
        self._nodes: dict[tuple[str, str | None], _Node] = {}
        self._default_subclass: dict[str, str] = {}
        self._order: list[str] = []
        self._parse(dictionary)
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._index: dict[str, list[_Term]] = {}
        self._class_words: frozenset[str] = frozenset()

    # -- configuration --

    def _parse(self, d: Mapping[str, Any]) -> None:
        if not isinstance(d, Mapping) or not isinstance(d.get("classes"), Mapping):
            raise DomainError("the classification dictionary needs a 'classes' mapping", field="classes",
                              code="bad_dictionary")
        self.strong_score = float(d.get("strong_score", 4.0))
        self.min_score = float(d.get("min_score", 1.0))
        self.fallback_category = str(d.get("fallback_category", "other"))
        classes: Mapping[str, Any] = d["classes"]
        for category, spec in classes.items():
            if category not in CATEGORIES:
                raise DomainError(f"unknown class {category!r} in dictionary", field="classes",
                                  code="bad_dictionary")
            spec = spec or {}
            self._order.append(category)
            self._nodes[(category, None)] = self._node(spec, category)
            self._add_terms(spec.get("terms"), ("class", category, None))
            if spec.get("default_subclass"):
                validate_classification(category, spec["default_subclass"], "normal")
                self._default_subclass[category] = spec["default_subclass"]
            for sub, sub_spec in (spec.get("subclasses") or {}).items():
                validate_classification(category, sub, "normal")
                sub_spec = sub_spec or {}
                self._nodes[(category, sub)] = self._node(sub_spec, f"{category}.{sub}")
                self._add_terms(sub_spec.get("terms"), ("class", category, sub))
        for category in CATEGORIES:
            self._nodes.setdefault((category, None), _Node(None, False))
        for i, rule in enumerate(d.get("priority_rules") or []):
            when = rule.get("when") or {}
            cat, sub = when.get("category"), when.get("subcategory")
            priority = rule.get("priority")
            if priority not in PRIORITIES:
                raise DomainError(f"rule {rule.get('name', i)}: unknown priority {priority!r}",
                                  field="priority_rules", code="bad_dictionary")
            if cat is not None:
                validate_classification(cat, sub, priority)
            self._rules.append(_Rule(str(rule.get("name", i)), priority, bool(rule.get("emergency", False)),
                                     cat, sub))
            self._add_terms(rule.get("terms"), ("rule", i))
        for kind, terms in (d.get("complaint_validity") or {}).items():
            if kind not in VALIDITIES:
                raise DomainError(f"unknown complaint validity {kind!r}", field="complaint_validity",
                                  code="bad_dictionary")
            self._add_terms(terms, ("validity", kind))

    @staticmethod
    def _node(spec: Mapping[str, Any], where: str) -> _Node:
        priority = spec.get("priority")
        if priority is not None and priority not in PRIORITIES:
            raise DomainError(f"{where}: unknown priority {priority!r}", field="classes", code="bad_dictionary")
        return _Node(priority, bool(spec.get("emergency", False)))

    def _add_terms(self, terms: Any, target: tuple[Any, ...]) -> None:
        if terms is None:
            return
        items: Iterable[tuple[Any, Any]]
        if isinstance(terms, Mapping):
            items = terms.items()
        else:
            items = ((t, 1.0) for t in terms)
        for text, weight in items:
            text = _normalise(str(text)).strip()
            if text:
                self._terms.append(_Term(text, (), float(weight), target))

    # -- segmentation --

    def _ensure_tokenizer(self) -> Any:
        if self._tokenizer is not None:
            return self._tokenizer
        with self._lock:
            if self._tokenizer is None:
                import jieba  # deferred: loading its dictionary takes a second and is only needed to classify

                jieba.setLogLevel(logging.WARNING)
                tokenizer = (jieba.Tokenizer(dictionary=self._segmentation_dictionary)
                             if self._segmentation_dictionary else jieba.Tokenizer())
                tokenizer.initialize()
                # Only class terms become jieba words: rule and validity phrases ("水管爆", "怎么回事") would
                # otherwise swallow the class words they contain; they match as word sequences instead.
                for word in {t.text for t in self._terms if t.target[0] == "class"}:
                    if _CJK.search(word) and " " not in word:
                        tokenizer.add_word(word)
                index: dict[str, list[_Term]] = {}
                resolved: list[_Term] = []
                for term in self._terms:
                    tokens = tuple(self._cut(tokenizer, term.text))
                    if not tokens:
                        continue
                    t = dataclasses.replace(term, tokens=tokens)
                    resolved.append(t)
                    index.setdefault(tokens[0], []).append(t)
                self._terms = resolved
                self._index = index
                # A compound the dictionary itself lists ("打不着火") is read as that term only, not as "着火".
                self._class_words = frozenset(t.tokens[0] for t in resolved
                                              if len(t.tokens) == 1 and t.target[0] == "class")
                self._tokenizer = tokenizer
        return self._tokenizer

    @staticmethod
    def _cut(tokenizer: Any, text: str) -> list[str]:
        out = []
        for token in tokenizer.cut(_normalise(text), HMM=False):
            token = token.strip()
            if token and not _PUNCT_ONLY.match(token):
                out.append(_stem(token))
        return out

    def tokenize(self, text: str) -> list[str]:
        """The words the classifier sees (normalised, punctuation dropped)."""
        return self._cut(self._ensure_tokenizer(), text)

    # -- classification --

    def _matches(self, tokens: list[str]) -> list[tuple[int, _Term]]:
        found: dict[int, tuple[int, _Term]] = {}
        for pos, token in enumerate(tokens):
            for term in self._index.get(token, ()):
                n = len(term.tokens)
                if tuple(tokens[pos:pos + n]) == term.tokens and id(term) not in found:
                    found[id(term)] = (pos, term)
        # jieba's own dictionary holds compounds ("电梯间", "燃气灶") that swallow a term; a CJK term of two or more
        # characters still counts inside such a word. Single characters never do: "火" must not hit "火车".
        for pos, token in enumerate(tokens):
            if len(token) < 3 or not _CJK.search(token):
                continue
            listed = token in self._class_words
            for term in self._terms:
                if listed and term.target[0] == "class":
                    continue
                if (id(term) not in found and len(term.tokens) == 1 and 2 <= len(term.text) < len(token)
                        and term.text in token):
                    found[id(term)] = (pos, term)
        return sorted(found.values(), key=lambda pt: pt[0])

    def classify(self, text: str) -> Classification:
        self._ensure_tokenizer()
        tokens = self._cut(self._tokenizer, text or "")
        matches = self._matches(tokens)

        class_score: dict[str, float] = {}
        sub_score: dict[tuple[str, str], float] = {}
        class_terms: dict[str, list[str]] = {}
        sub_terms: dict[tuple[str, str], list[str]] = {}
        fired_rules: dict[int, list[str]] = {}
        validity_score: dict[str, float] = {}
        validity_terms: dict[str, list[str]] = {}
        for _pos, term in matches:
            kind = term.target[0]
            if kind == "class":
                _, category, sub = term.target
                class_score[category] = class_score.get(category, 0.0) + term.weight
                class_terms.setdefault(category, []).append(term.text)
                if sub is not None:
                    sub_score[(category, sub)] = sub_score.get((category, sub), 0.0) + term.weight
                    sub_terms.setdefault((category, sub), []).append(term.text)
            elif kind == "rule":
                fired_rules.setdefault(term.target[1], []).append(term.text)
            else:
                validity_score[term.target[1]] = validity_score.get(term.target[1], 0.0) + term.weight
                validity_terms.setdefault(term.target[1], []).append(term.text)

        ranked = sorted(class_score.items(), key=lambda kv: (-kv[1], self._order.index(kv[0])))
        if not ranked or ranked[0][1] < self.min_score:
            category, top, confidence, subcategory = self.fallback_category, 0.0, 0.0, None
        else:
            category, top = ranked[0]
            total = sum(class_score.values())
            confidence = round((top / total) * min(1.0, top / self.strong_score), 2)
            subs = [(s, v) for (c, s), v in sub_score.items() if c == category]
            if subs:
                order = list(SUBCATEGORIES.get(category, ()))
                subcategory = sorted(subs, key=lambda sv: (-sv[1], order.index(sv[0])))[0][0]
            else:
                subcategory = self._default_subclass.get(category)

        class_node = self._nodes[(category, None)]
        sub_node = self._nodes.get((category, subcategory)) if subcategory else None
        priority = (sub_node.priority if sub_node and sub_node.priority else None) or class_node.priority or "normal"
        emergency = class_node.emergency or bool(sub_node and sub_node.emergency)
        supporting = list(class_terms.get(category, [])) if category in class_score else []
        lowered: list[str] = []
        for i, words in fired_rules.items():
            rule = self._rules[i]
            if rule.category is not None and rule.category != category:
                continue
            if rule.subcategory is not None and rule.subcategory != subcategory:
                continue
            if rule.priority == "planned":
                lowered.extend(words)
                continue
            if priority_rank(rule.priority) > priority_rank(priority):
                priority = rule.priority
            emergency = emergency or rule.emergency
            supporting.extend(words)
        if emergency:
            priority = "emergency"
        elif lowered and priority == "normal":
            # "no rush" only ever defers an ordinary request; it never talks an urgent one down.
            priority = "planned"
            supporting.extend(lowered)

        validity = None
        if category == "complaint":
            valid = validity_score.get("valid", 0.0) + sum(v for (c, _s), v in sub_score.items() if c == "complaint")
            communicative = sorted(((k, validity_score.get(k, 0.0)) for k in COMMUNICATIVE), key=lambda kv: -kv[1])
            kind, score = communicative[0]
            validity = kind if score > valid else "valid"
            supporting.extend(validity_terms.get(validity, []))

        return Classification(category=category, subcategory=subcategory, priority=priority, emergency=emergency,
                              confidence=confidence, matched_terms=tuple(dict.fromkeys(supporting)),
                              validity=validity, source="auto")


def _normalise(text: str) -> str:
    # NFKC folds full-width digits and letters ("１２０", "ＬＩＦＴ") into the forms the dictionary uses.
    return unicodedata.normalize("NFKC", text).lower()
