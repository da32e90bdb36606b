"""Events the dispatch service consumes, by producer. Its queue `dispatch.events` is bound to exactly these."""

SUBSCRIBES: dict[str, list[str]] = {
    "intake": [
        "RequestRegistered",
        "RequestReclassified",
        "RequestCancelled",
    ],
    "feedback": [
        "FollowUpRaised",
    ],
}
