from datetime import datetime, timedelta, UTC
from uuid import UUID

import pytest

from services.common.domain import DomainError, InvalidTransition
from services.feedback.domain.events import ReplyLetterArchived, ReplyLetterConfirmed, ReplyLetterSent
from services.feedback.domain.letters import LetterTemplate, ReplyLetter, required_reviewers
from services.feedback.domain.policy import FeedbackPolicy

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
POLICY = FeedbackPolicy()
TEMPLATE = LetterTemplate("complaint-reply-v1", "投诉回函",
                          "尊敬的${resident_title}:\n您反映的${subject}(报事编号 ${request_no})我司已处理。")
VALUES = {"resident_title": "业主", "subject": "楼道漏水", "request_no": "LY-20261129-000042"}
PROPERTY_ROLES = ["property_manager", "property_department_head", "cs_supervisor", "department_manager"]


def drafted(concerns_property=True, legal=False):
    return ReplyLetter.draft(request_no="LY-20261129-000042", department="engineering", template=TEMPLATE,
                             values=VALUES, author="cc-zhao", now=T0, concerns_property=concerns_property,
                             legal=legal, letter_id=UUID(int=1))


def review_all(letter, at=T0 + timedelta(hours=1)):
    for role in letter.required_roles:
        letter.review(role=role, reviewer_id=f"{role}-1", decision="approved", now=at)


def approved():
    letter = drafted()
    review_all(letter)
    letter.approve(approver_id="mkt-chen", approver_role="marketing_manager", now=T0 + timedelta(hours=2))
    return letter


def test_required_reviewers_follow_the_standard():
    assert list(required_reviewers(concerns_property=True, legal=False)) == PROPERTY_ROLES
    assert list(required_reviewers(concerns_property=False, legal=True)) == [
        "cs_supervisor", "department_manager", "lawyer"]


def test_draft_is_rendered_from_the_template_and_a_missing_value_is_refused():
    letter = drafted()
    assert letter.current.body.startswith("尊敬的业主:")
    assert "LY-20261129-000042" in letter.current.body
    assert letter.events[0].required_reviewers == PROPERTY_ROLES
    with pytest.raises(DomainError) as exc:
        ReplyLetter.draft(request_no="LY-1", department="engineering", template=TEMPLATE, values={"subject": "x"},
                          author="cc-zhao", now=T0, concerns_property=False)
    assert exc.value.field == "values"


def test_letter_cannot_be_approved_before_all_reviews():
    letter = drafted()
    letter.review(role="cs_supervisor", reviewer_id="sup-wang", decision="approved", now=T0)
    with pytest.raises(InvalidTransition) as exc:
        letter.approve(approver_id="mkt-chen", approver_role="marketing_manager", now=T0)
    assert exc.value.current_state == "draft"
    assert "draft" in exc.value.message and "property_manager" in exc.value.message


@pytest.mark.parametrize("reviewed", [False, True])
def test_letter_cannot_be_sent_before_its_reviews_and_approval(reviewed):
    letter = drafted()
    if reviewed:
        review_all(letter)
    with pytest.raises(InvalidTransition) as exc:
        letter.send(method="registered_mail", tracking_no="XA1CN", sent_by="cc-zhao", now=T0, policy=POLICY)
    assert exc.value.current_state == ("reviewed" if reviewed else "draft")
    assert letter.sent_at is None


def test_out_of_order_confirmation_and_archive_are_refused_naming_the_state():
    letter = approved()
    with pytest.raises(InvalidTransition) as exc:
        letter.confirm(confirmed_by="cc-zhao", now=T0)
    assert exc.value.current_state == "approved"
    with pytest.raises(InvalidTransition) as exc:
        letter.archive(archived_by="cc-zhao", now=T0)
    assert exc.value.current_state == "approved"


def test_only_the_marketing_manager_approves():
    letter = drafted()
    review_all(letter)
    with pytest.raises(DomainError) as exc:
        letter.approve(approver_id="cs-boss", approver_role="cs_supervisor", now=T0)
    assert exc.value.code == "forbidden" and letter.state == "reviewed"


def test_reviewer_not_required_for_this_letter_is_refused():
    letter = drafted(concerns_property=False)
    with pytest.raises(DomainError) as exc:
        letter.review(role="lawyer", reviewer_id="law-1", decision="approved", now=T0)
    assert exc.value.field == "role"


def test_revision_after_review_keeps_every_version_and_resets_reviews_and_approval():
    letter = approved()
    letter.revise(body="尊敬的业主:修改后的回复。", author="cc-zhao", now=T0 + timedelta(hours=3), note="补充赔偿说明")
    assert letter.state == "draft" and letter.version == 2 and letter.approved_by is None
    assert [v.number for v in letter.versions] == [1, 2]
    assert letter.versions[0].body.startswith("尊敬的业主:\n您反映的楼道漏水")
    assert letter.pending_roles == PROPERTY_ROLES
    with pytest.raises(DomainError) as exc:
        letter.review(role="cs_supervisor", reviewer_id="sup-wang", decision="approved", now=T0, version=1)
    assert exc.value.code == "stale_version"
    with pytest.raises(InvalidTransition):
        letter.send(method="online", sent_by="cc-zhao", now=T0, policy=POLICY)


def test_changes_requested_keeps_the_letter_in_draft():
    letter = drafted(concerns_property=False)
    letter.review(role="cs_supervisor", reviewer_id="sup-wang", decision="approved", now=T0)
    e = letter.review(role="department_manager", reviewer_id="eng-mgr", decision="changes_requested",
                      comments="写明维修完成日期", now=T0)
    assert letter.state == "draft" and e.pending_roles == ["department_manager"]


def test_full_workflow_records_who_and_when_and_confirmation_is_due_three_days_after_sending():
    letter = approved()
    sent_at = T0 + timedelta(days=1)
    with pytest.raises(DomainError) as exc:
        letter.send(method="registered_mail", sent_by="cc-zhao", now=sent_at, policy=POLICY)
    assert exc.value.field == "tracking_no"
    sent = letter.send(method="registered_mail", tracking_no="XA123456789CN", sent_by="cc-zhao", now=sent_at,
                       policy=POLICY)
    assert isinstance(sent, ReplyLetterSent) and sent.confirmation_due_at == sent_at + timedelta(days=3)
    confirmed = letter.confirm(confirmed_by="cc-zhao", now=sent_at + timedelta(days=3))
    assert confirmed == ReplyLetterConfirmed(UUID(int=1), "LY-20261129-000042", "cc-zhao",
                                             sent_at + timedelta(days=3), True, True, "")
    archived = letter.archive(archived_by="cc-zhao", now=sent_at + timedelta(days=3, hours=1))
    assert isinstance(archived, ReplyLetterArchived)
    assert archived.notify_roles == ["marketing_vp", "general_manager"]
    assert [s.action for s in letter.history] == [
        "drafted", "reviewed:property_manager:approved", "reviewed:property_department_head:approved",
        "reviewed:cs_supervisor:approved", "reviewed:department_manager:approved", "approved", "sent", "confirmed",
        "archived"]
    assert letter.history[5].by == "mkt-chen" and letter.history[5].at == T0 + timedelta(hours=2)
    with pytest.raises(InvalidTransition) as exc:
        letter.revise(body="x", author="cc-zhao", now=sent_at)
    assert exc.value.current_state == "archived"


def test_letter_not_received_goes_back_to_be_sent_again():
    letter = approved()
    letter.send(method="registered_mail", tracking_no="XA1CN", sent_by="cc-zhao", now=T0, policy=POLICY)
    e = letter.confirm(confirmed_by="cc-zhao", now=T0 + timedelta(days=4), received=False, notes="业主未收到")
    assert not e.received and not e.on_time and letter.state == "approved"
    letter.send(method="online", sent_by="cc-zhao", now=T0 + timedelta(days=4), policy=POLICY)
    assert letter.state == "sent" and letter.tracking_no is None
