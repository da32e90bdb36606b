"""Reply letters (回函) to key complaints, answered in the company's name (standard 003, 客户回函作业指导书).

Drafted from a template, reviewed by every required reviewer (3.3), approved by the marketing manager (3.4), sent by
registered mail or online (3.6), confirmed by phone 3 days after sending, archived by the customer centre (3.8), and
the marketing VP and general manager told it is done (3.5). Every version is kept; each step records who and when.
"""
from __future__ import annotations

import string
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from collections.abc import Mapping
from uuid import UUID

from services.common.domain import DomainError, Event, InvalidTransition, utc
from services.feedback.domain.events import (
    ReplyLetterApproved,
    ReplyLetterArchived,
    ReplyLetterConfirmed,
    ReplyLetterDrafted,
    ReplyLetterReviewed,
    ReplyLetterSent,
)
from services.feedback.domain.policy import FeedbackPolicy

# 3.3 审核人
PROPERTY_MANAGER = "property_manager"  # 物业部项目管理处主任
PROPERTY_DEPARTMENT_HEAD = "property_department_head"  # 物业部经理
CS_SUPERVISOR = "cs_supervisor"  # 客户中心主管
DEPARTMENT_MANAGER = "department_manager"  # 报事相关部门的经理
LAWYER = "lawyer"  # 律师
REVIEWER_ROLES = (PROPERTY_MANAGER, PROPERTY_DEPARTMENT_HEAD, CS_SUPERVISOR, DEPARTMENT_MANAGER, LAWYER)
APPROVER_ROLE = "marketing_manager"  # 3.4 审批人: 营销部经理
NOTIFY_ROLES = ("marketing_vp", "general_manager")  # 3.5 完成通知人: 营销副总, 总经理
SEND_METHODS = ("registered_mail", "online")
REVIEW_DECISIONS = ("approved", "changes_requested")
LETTER_STATES = ("draft", "reviewed", "approved", "sent", "confirmed", "archived")


def required_reviewers(*, concerns_property: bool, legal: bool) -> tuple[str, ...]:
    roles = [CS_SUPERVISOR, DEPARTMENT_MANAGER]
    if concerns_property:
        roles[:0] = [PROPERTY_MANAGER, PROPERTY_DEPARTMENT_HEAD]
    if legal:
        roles.append(LAWYER)
    return tuple(roles)


def check_letter_transition(previous: str, current: str) -> None:
    match (previous, current):
        case ("draft", "draft"):  # a review recorded while others are pending, or a revision
            return
        case ("draft", "reviewed"):  # the last required review approved this version
            return
        case ("reviewed", "draft") | ("approved", "draft"):  # a revision resets the reviews and the approval
            return
        case ("reviewed", "approved") | ("approved", "sent") | ("sent", "confirmed") | ("confirmed", "archived"):
            return
        case ("sent", "approved"):  # the resident never received it: send again
            return
        case _:
            raise InvalidTransition(f"a reply letter in state {previous} cannot move to {current}",
                                    current_state=previous)


@dataclass(frozen=True)
class LetterTemplate:
    template_id: str
    title: str
    body: str  # string.Template syntax: ${resident_title}, ${request_no}, ...


def render(template: LetterTemplate, values: Mapping[str, str]) -> str:
    try:
        return string.Template(template.body).substitute(values)
    except KeyError as exc:
        raise DomainError(f"template {template.template_id} needs a value for {exc.args[0]}", field="values") from None
    except ValueError as exc:
        raise DomainError(f"template {template.template_id} is malformed: {exc}", field="template") from None


@dataclass(frozen=True)
class LetterVersion:
    number: int
    body: str
    author: str
    created_at: datetime
    template_id: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Review:
    version: int
    role: str
    reviewer_id: str
    decision: str
    comments: str
    at: datetime


@dataclass(frozen=True)
class Step:
    """One line of the letter's history: what was done, to which version, by whom and when."""

    action: str
    by: str
    at: datetime
    version: int
    detail: str = ""


@dataclass
class ReplyLetter:
    letter_id: UUID
    request_no: str
    department: str
    concerns_property: bool
    legal: bool
    versions: list[LetterVersion]
    state: str = "draft"
    reviews: list[Review] = field(default_factory=list)  # every review ever made, of every version
    approved_by: str | None = None
    approved_at: datetime | None = None
    send_method: str | None = None
    tracking_no: str | None = None
    sent_at: datetime | None = None
    confirmation_due_at: datetime | None = None
    confirmed_at: datetime | None = None
    archived_at: datetime | None = None
    history: list[Step] = field(default_factory=list)
    events: list[Event] = field(default_factory=list, compare=False, repr=False)

    # --- creation ---

    @classmethod
    def draft(cls, *, request_no: str, department: str, template: LetterTemplate, values: Mapping[str, str],
              author: str, now: datetime, concerns_property: bool, legal: bool = False,
              letter_id: UUID | None = None) -> ReplyLetter:
        now = utc(now)
        if not request_no:
            raise DomainError("a reply letter answers a request", field="request_no")
        if not author:
            raise DomainError("who drafted the letter is required", field="author")
        body = render(template, values)
        letter = cls(letter_id or uuid.uuid4(), request_no, department, concerns_property, legal,
                     versions=[LetterVersion(1, body, author, now, template.template_id)])
        letter._step("drafted", author, now, f"template {template.template_id}")
        letter.events.append(ReplyLetterDrafted(letter.letter_id, request_no, 1, template.template_id, author, now,
                                                list(letter.required_roles)))
        return letter

    # --- queries ---

    @property
    def version(self) -> int:
        return self.versions[-1].number

    @property
    def current(self) -> LetterVersion:
        return self.versions[-1]

    @property
    def required_roles(self) -> tuple[str, ...]:
        return required_reviewers(concerns_property=self.concerns_property, legal=self.legal)

    def approvals_of_current(self) -> dict[str, Review]:
        """The latest review per role of the current version; earlier versions' reviews do not count."""
        latest: dict[str, Review] = {}
        for r in self.reviews:
            if r.version == self.version:
                latest[r.role] = r
        return latest

    @property
    def pending_roles(self) -> list[str]:
        latest = self.approvals_of_current()
        return [r for r in self.required_roles if r not in latest or latest[r].decision != "approved"]

    # --- commands ---

    def revise(self, *, body: str, author: str, now: datetime, note: str = "") -> ReplyLetterDrafted:
        """A new version; all reviews and any approval must be given again."""
        now = utc(now)
        check_letter_transition(self.state, "draft")
        if not body.strip():
            raise DomainError("the revised letter is empty", field="body")
        number = self.version + 1
        self.versions.append(LetterVersion(number, body, author, now, self.current.template_id, note))
        self.state = "draft"
        self.approved_by = None
        self.approved_at = None
        self._step("revised", author, now, note)
        event = ReplyLetterDrafted(self.letter_id, self.request_no, number, self.current.template_id, author, now,
                                   list(self.required_roles))
        self.events.append(event)
        return event

    def review(self, *, role: str, reviewer_id: str, decision: str, now: datetime, comments: str = "",
               version: int | None = None) -> ReplyLetterReviewed:
        """One required reviewer's verdict on the current version. `version`, when given, guards against
        reviewing a text that has since been revised."""
        now = utc(now)
        if self.state != "draft":
            raise InvalidTransition(f"reply letter is {self.state}; reviews are taken on a draft",
                                    current_state=self.state)
        if role not in self.required_roles:
            raise DomainError(f"{role} is not a required reviewer of this letter "
                              f"(required: {', '.join(self.required_roles)})", field="role")
        if decision not in REVIEW_DECISIONS:
            raise DomainError(f"decision must be one of {', '.join(REVIEW_DECISIONS)}", field="decision")
        if not reviewer_id:
            raise DomainError("who reviewed is required", field="reviewer_id")
        if version is not None and version != self.version:
            raise DomainError(f"version {version} is outdated; the letter is at version {self.version}",
                              field="version", code="stale_version")
        if decision == "changes_requested" and not comments.strip():
            raise DomainError("say what must change", field="comments")
        self.reviews.append(Review(self.version, role, reviewer_id, decision, comments, now))
        pending = self.pending_roles
        target = "reviewed" if not pending else "draft"
        check_letter_transition(self.state, target)
        self.state = target
        self._step(f"reviewed:{role}:{decision}", reviewer_id, now, comments)
        event = ReplyLetterReviewed(self.letter_id, self.request_no, self.version, role, reviewer_id, decision,
                                    comments, now, pending)
        self.events.append(event)
        return event

    def approve(self, *, approver_id: str, approver_role: str, now: datetime) -> ReplyLetterApproved:
        now = utc(now)
        if approver_role != APPROVER_ROLE:
            raise DomainError(f"only the {APPROVER_ROLE} approves reply letters", field="approver_role",
                              code="forbidden")
        self._require("approved", f"pending reviews: {', '.join(self.pending_roles)}" if self.state == "draft" else "")
        self.state = "approved"
        self.approved_by = approver_id
        self.approved_at = now
        self._step("approved", approver_id, now)
        event = ReplyLetterApproved(self.letter_id, self.request_no, self.version, approver_id, now)
        self.events.append(event)
        return event

    def send(self, *, method: str, sent_by: str, now: datetime, policy: FeedbackPolicy,
             tracking_no: str | None = None) -> ReplyLetterSent:
        now = utc(now)
        if method not in SEND_METHODS:
            raise DomainError(f"send method must be one of {', '.join(SEND_METHODS)}", field="method")
        self._require("sent", "it needs all its reviews and the marketing manager's approval first"
                      if self.state in ("draft", "reviewed") else "")
        if method == "registered_mail" and not (tracking_no or "").strip():
            raise DomainError("registered mail needs its tracking number", field="tracking_no")
        self.state = "sent"
        self.send_method = method
        self.tracking_no = tracking_no
        self.sent_at = now
        self.confirmation_due_at = now + policy.letter_confirmation_after
        self._step("sent", sent_by, now, f"{method} {tracking_no or ''}".strip())
        event = ReplyLetterSent(self.letter_id, self.request_no, self.version, method, tracking_no, sent_by, now,
                                self.confirmation_due_at)
        self.events.append(event)
        return event

    def confirm(self, *, confirmed_by: str, now: datetime, received: bool = True,
                notes: str = "") -> ReplyLetterConfirmed:
        """The phone call after sending. If the resident did not receive it the letter goes back to approved,
        to be sent again (with a new tracking number)."""
        now = utc(now)
        target = "confirmed" if received else "approved"
        self._require(target, "")
        assert self.confirmation_due_at is not None
        on_time = now <= self.confirmation_due_at
        self.state = target
        if received:
            self.confirmed_at = now
        self._step("confirmed" if received else "not_received", confirmed_by, now, notes)
        event = ReplyLetterConfirmed(self.letter_id, self.request_no, confirmed_by, now, received, on_time, notes)
        self.events.append(event)
        return event

    def archive(self, *, archived_by: str, now: datetime) -> ReplyLetterArchived:
        now = utc(now)
        self._require("archived", "")
        self.state = "archived"
        self.archived_at = now
        self._step("archived", archived_by, now)
        event = ReplyLetterArchived(self.letter_id, self.request_no, len(self.versions), archived_by, now,
                                    list(NOTIFY_ROLES))
        self.events.append(event)
        return event

    # --- helpers ---

    def _require(self, target: str, why: str) -> None:
        try:
            check_letter_transition(self.state, target)
        except InvalidTransition as exc:
            if why:
                raise InvalidTransition(f"{exc.message}: {why}", current_state=self.state) from None
            raise

    def _step(self, action: str, by: str, at: datetime, detail: str = "") -> None:
        self.history.append(Step(action, by, at, self.version, detail))
