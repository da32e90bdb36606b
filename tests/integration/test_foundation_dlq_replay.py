"""Replaying a dead-letter queue after a fix (issue 7, item 6): the runbook's command, tested."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

from services.common.config import REPO_ROOT
from services.intake.entrypoints.service import IntakeService
from tests.support import admin_conn, amqp_uri, get_messages, publish_inbound, queue_info, scalar, wait_for


def test_a_request_dead_lettered_for_an_unknown_property_is_registered_once_after_the_fix_and_replay(
        run_service: Any) -> None:
    run_service(IntakeService)
    get_messages("intake.inbound.dlq", 100)
    external_id = f"patrol-{uuid.uuid4()}"
    body = {"source": "patrol-app", "external_id": external_id, "channel": "patrol", "property_id": "NEWP",
            "area": "东门岗亭", "reporter": {"kind": "staff"}, "description": "东门道闸损坏，无法抬杆"}
    publish_inbound(body, routing_key="request.patrol")
    wait_for(lambda: queue_info("intake.inbound.dlq")["messages"] == 1, what="dead letter")

    listed = subprocess.run([sys.executable, "-m", "services.common.dlq", "list", "intake.inbound",
                             "--amqp-uri", amqp_uri()], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    entries = json.loads(listed.stdout)
    assert len(entries) == 1 and "property_id" in entries[0]["reason"]

    # The fix: ops add the new property.
    with admin_conn() as conn:
        conn.execute("INSERT INTO intake.properties (property_id, name) VALUES ('NEWP', '新盘') ON CONFLICT DO NOTHING")

    for _ in range(2):  # replaying twice (an operator's slip) still registers once
        subprocess.run([sys.executable, "-m", "services.common.dlq", "replay", "intake.inbound",
                        "--amqp-uri", amqp_uri()], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    wait_for(lambda: scalar("intake", "SELECT count(*) FROM requests WHERE external_id = %s", (external_id,)) == 1,
             what="registered after replay")
    # The management API refreshes queue stats every few seconds.
    wait_for(lambda: queue_info("intake.inbound.dlq")["messages"] == 0, what="dead-letter queue emptied")
