"""Events the dispatch service consumes, by producer. Its queue `dispatch.events` is bound to exactly these."""

SUBSCRIBES: dict[str, list[str]] = {
    "intake": [
        "RequestRegistered",
        "RequestReclassified",
        "RequestCancelled",
        # Closed at intake without dispatch's work (a consultation answered at the desk): cancel the open work order.
        "RequestClosed",
    ],
    "feedback": [
        "FollowUpRaised",
    ],
}
