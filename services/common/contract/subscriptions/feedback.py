"""Events the feedback service consumes, by producer. Its queue `feedback.events` is bound to exactly these."""

SUBSCRIBES: dict[str, list[str]] = {
    "intake": [
        "RequestRegistered",
        "RequestReclassified",
        "LetterPraiseRecorded",
    ],
    "dispatch": [
        "WorkOrderAssigned",
        "WorkOrderResolved",
    ],
    "escalation": [
        "ClockMet",
        "ClockBreached",
    ],
}
