"""Registration at scale and its links: numbers under concurrency, duplicates, clusters, letters, no PII in events."""
from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy

from services.intake.domain.numbering import parse_request_no
from services.intake.entrypoints.service import IntakeService
from tests.support import amqp_uri, db, db_url, scalar

NAME, PHONE = "欧阳娜娜", "13912345678"


@pytest.fixture(scope="module")
def intake(infra: None) -> Any:
    # max_workers high enough that 200 submissions really run at once.
    container = ServiceContainer(IntakeService, {
        "AMQP_URI": amqp_uri(), "DATABASE_URL": db_url("intake"), "max_workers": 200, "DB_POOL_SIZE": 8,
        "METRICS_PORT": 0, "LOG_LEVEL": "WARNING", "CLUSTER_MIN_REPORTS": 3, "CLUSTER_WINDOW_MINUTES": 120})
    container.start()
    try:
        with ClusterRpcProxy({"AMQP_URI": amqp_uri()}, timeout=60) as cluster:
            yield cluster
    finally:
        container.stop()


def body(**overrides: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"source": "desk", "channel": "phone", "property_id": "HY", "unit": "2-0301",
                         "reporter": {"kind": "resident"}, "description": "家里水管漏水", "agent_id": "agent-007"}
    b.update(overrides)
    return b


def submit(intake: Any, **overrides: Any) -> dict[str, Any]:
    answer = intake.intake.submit(body(**overrides))
    assert answer["status"] in (200, 201), answer
    return answer["data"]


def test_200_concurrent_submissions_get_200_distinct_numbers_in_time_order(intake: Any) -> None:
    source = f"bulk-{uuid.uuid4().hex[:8]}"

    def many(indexes: list[int]) -> list[str]:
        # One standalone proxy must not be read from two green threads at once: all calls are sent first
        # (the container runs them concurrently, max_workers=200), then the replies are collected.
        replies = [intake.intake.submit.call_async(body(
            source=source, external_id=f"e-{i}", channel="email", property_id="JH", unit=f"{i % 9 + 1}-{100 + i}",
            description=f"楼道灯不亮 {i}")) for i in indexes]
        answers = [r.result() for r in replies]
        assert all(a["status"] in (200, 201) for a in answers), answers
        return [a["data"]["request_no"] for a in answers]

    numbers = many(list(range(200)))
    assert len(set(numbers)) == 200
    parsed = sorted(parse_request_no(n) for n in numbers)
    assert {p.property_id for p in parsed} == {"JH"}
    # Sortable by time: ordering by number is ordering by registration time.
    with db("intake") as conn:
        rows = conn.execute("SELECT request_no FROM requests WHERE source = %s ORDER BY registered_at, request_no",
                            (source,)).fetchall()
    by_time = [r[0] for r in rows]
    assert len(by_time) == 200
    seqs = [parse_request_no(n).seq for n in by_time]
    # The registration instant is read under the day's counter lock, so time order is number order.
    assert seqs == sorted(seqs) and len(set(seqs)) == 200
    # Redelivery of the same (source, external_id), also concurrently, gives the same number, once.
    again = many([7] * 20)
    assert set(again) == {numbers[7]}
    assert scalar("intake", "SELECT count(*) FROM requests WHERE source = %s", (source,)) == 200


def test_same_unit_and_class_within_a_day_is_linked_not_merged(intake: Any) -> None:
    first = submit(intake, unit="3-1201", description="卫生间水管漏水")
    second = submit(intake, unit="3-1201", description="卫生间水管还在漏水")
    assert first["duplicate_of"] is None
    assert second["duplicate_of"] == first["request_no"] and second["duplicate_reason"] == "same_unit_and_class"
    third = submit(intake, unit="3-1201", description="水管又漏了")
    assert third["duplicate_of"] == first["request_no"]  # a chain links to the first report
    assert scalar("intake", "SELECT count(*) FROM timeline WHERE request_no = %s AND event_type = 'DuplicateLinked'",
                  (second["request_no"],)) == 1
    got = intake.intake.get_request(second["request_no"])["data"]
    assert got["duplicate_of"] == first["request_no"] and got["status"] == "registered"


def test_the_same_caller_within_a_day_is_linked(intake: Any) -> None:
    phone = f"137{uuid.uuid4().int % 10**8:08d}"
    first = submit(intake, unit="4-1801", reporter={"kind": "resident", "phone": phone}, description="电梯异响")
    second = submit(intake, unit="1-0902", reporter={"kind": "resident", "phone": phone},
                    description="请问停车费怎么交")
    assert second["duplicate_of"] == first["request_no"] and second["duplicate_reason"] == "same_caller"
    # A call-centre caller number counts as the caller too.
    third = submit(intake, source="cc", external_id=f"call-{uuid.uuid4()}", channel="call_centre", unit="1-1002",
                   description="咨询装修手续", channel_details={"caller_number": phone, "call_id": "c-1"})
    assert third["duplicate_of"] == first["request_no"]


def test_a_cancelled_request_is_not_a_duplicate_target(intake: Any) -> None:
    first = submit(intake, unit="4-1701", description="阳台漏水")
    intake.intake.cancel(first["request_no"], {"reason": "登记错误", "by": "agent-007"})
    assert submit(intake, unit="4-1701", description="阳台漏水")["duplicate_of"] is None


def test_many_reports_in_one_place_form_one_incident_that_grows(intake: Any) -> None:
    # A public area of its own, so that other tests' plumbing reports cannot join this cluster.
    place = f"6栋地下车库-{uuid.uuid4().hex[:6]}"
    desc = "水管爆裂，地面全是水"

    def report() -> dict[str, Any]:
        return submit(intake, property_id="LY", unit=None, area=place, description=desc)

    a, b = report(), report()
    assert a["incident_id"] is None and b["incident_id"] is None
    c = report()
    assert c["classification"]["subcategory"] == "plumbing"
    assert c["incident_id"] and c["incident_children_count"] == 3
    d = report()
    assert d["incident_id"] == c["incident_id"] and d["incident_children_count"] == 4
    other = submit(intake, property_id="LY", unit=None, area=f"{place}-东", description=desc)
    assert other["incident_id"] is None
    with db("intake") as conn:
        members = {r[0] for r in conn.execute("SELECT request_no FROM requests WHERE incident_id = %s",
                                              (c["incident_id"],)).fetchall()}
        events = conn.execute("SELECT data FROM timeline WHERE event_type = 'IncidentClustered' "
                              "AND data->>'incident_id' = %s ORDER BY at", (c["incident_id"],)).fetchall()
    assert members == {a["request_no"], b["request_no"], c["request_no"], d["request_no"]}
    assert [e[0]["children_count"] for e in events] == [3, 4]


def test_letters_are_routed_by_kind(intake: Any) -> None:
    today = date.today().isoformat()
    common = {"property_id": "LY", "received_date": today, "logged_by": "agent-007",
              "sender": {"name": NAME, "phone": PHONE}}
    report = intake.intake.log_letter({**common, "kind": "report", "subject": "地下车库照明坏了", "area": "地下车库"})
    assert report["status"] == 201, report
    no = report["data"]["request_no"]
    got = intake.intake.get_request(no)["data"]
    assert got["channel"] == "letter" and got["channel_details"]["kind"] == "report"
    assert got["channel_details"]["letter_id"] == report["data"]["letter_id"]

    complaint = intake.intake.log_letter({**common, "kind": "complaint", "subject": "保洁服务太差", "unit": "2-801"})
    assert complaint["data"]["routed_to"] == "cs_assistant" and complaint["data"]["request_no"] is None
    queue = intake.intake.list_letters({"routed_to": "cs_assistant"})["data"]["items"]
    assert complaint["data"]["letter_id"] in [x["letter_id"] for x in queue]
    assert all(x["sender"]["phone"] != PHONE for x in queue)
    decided = intake.intake.decide_letter(complaint["data"]["letter_id"],
                                          {"track": True, "reason": "涉及保洁服务质量，需跟踪", "by": "assistant-02"})
    assert decided["status"] == 200, decided
    tracked = intake.intake.get_request(decided["data"]["request_no"])["data"]
    assert tracked["category"] == "complaint" and tracked["owner_agent"] == "assistant-02"
    again = intake.intake.decide_letter(complaint["data"]["letter_id"],
                                        {"track": False, "reason": "再次决定", "by": "assistant-02"})
    assert again["status"] == 409

    praise = intake.intake.log_letter({**common, "kind": "praise", "subject": "感谢李师傅半夜修水管",
                                       "praised_staff_id": "tech-li"})
    assert praise["data"]["events"] == ["LetterLogged", "LetterPraiseRecorded"]
    work = intake.intake.log_letter({**common, "kind": "work", "subject": "街道办消防检查通知"})
    assert work["data"]["routed_to"] == "admin" and work["data"]["status"] == "forwarded_admin"
    refused = intake.intake.log_letter({**common, "kind": "praise", "subject": "感谢"})
    assert refused["status"] == 422 and "staff_id" in refused["errors"]


def test_reporter_name_and_phone_never_appear_in_events(intake: Any) -> None:
    marker = f"pii-{uuid.uuid4().hex[:6]}"
    data = submit(intake, unit="1-1101", reporter={"kind": "resident", "name": NAME, "phone": PHONE},
                  description=f"门锁坏了 {marker}")
    submit(intake, source="cc", external_id=f"call-{marker}", channel="call_centre", unit="1-1102",
           reporter={"kind": "resident", "name": NAME}, description=f"电梯困人 {marker}",
           channel_details={"caller_number": PHONE, "call_id": marker})
    intake.intake.hand_over(data["request_no"], {"to_agent": "agent-012", "reason": "交接班", "by": "agent-007"})
    with db("intake") as conn:
        rows = conn.execute("SELECT data::text FROM timeline").fetchall()
        rows += conn.execute("SELECT body::text FROM outbox").fetchall()
        details = conn.execute("SELECT details::text FROM requests WHERE description LIKE %s",
                               (f"%{marker}",)).fetchall()
    text = "\n".join(r[0] for r in rows + details)
    assert marker in text and "139****5678" in text
    assert PHONE not in text and NAME not in text
    assert json.dumps(NAME)[1:-1] not in text


def test_a_cluster_lookup_reads_the_reports_of_its_place_not_every_report_of_the_class(intake: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from services.intake.adapters import repository as repo
    place = f"7栋大堂-{uuid.uuid4().hex[:6]}"
    seed = submit(intake, property_id="LY", unit=None, area=f"{place}-seed", description="水管爆裂，地面全是水")
    # 5,000 plumbing reports of the same property elsewhere, inside the cluster window.
    with db("intake") as conn:
        conn.execute(
            "INSERT INTO requests SELECT (json_populate_record(r, json_build_object("
            "'request_no', r.request_no || '-' || g, 'request_id', gen_random_uuid(), 'area', r.area || '-' || g, "
            "'external_id', g::text, 'source', 'bench'))).* FROM requests r, generate_series(1, 5000) g "
            "WHERE r.request_no = %s", (seed["request_no"],))

    class Capture:
        def execute(self, sql: str, params: Any) -> Any:
            self.sql, self.params = sql, params
            return self

        read_past_deferred = execute  # the unit of work's read, as the lookup calls it

        def fetchall(self) -> list[Any]:
            return []

    now = datetime.now(UTC)
    capture = Capture()
    repo.cluster_candidates(capture, property_id="LY", category="repair", subcategory="plumbing",  # type: ignore[arg-type]
                            building=None, area=place, anywhere=False, since=now - timedelta(hours=2), until=now,
                            limit=50)
    with db("intake") as conn:
        conn.execute("ANALYZE requests")  # as autovacuum would after such a burst (it is off on CI's Postgres)
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + capture.sql, capture.params).fetchone()[0]

    def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
        return [node] + [n for child in node.get("Plans", []) for n in nodes(child)]
    scans = [n for n in nodes(plan[0]["Plan"]) if "Scan" in n["Node Type"]]
    assert "requests_cluster_area" in {n.get("Index Name") for n in scans}
    assert sum(n.get("Rows Removed by Filter", 0) + n["Actual Rows"] for n in scans) <= 5
