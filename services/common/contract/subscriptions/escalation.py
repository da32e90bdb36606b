"""Events the escalation service consumes, by producer. Its queue `escalation.events` is bound to exactly these
(services/escalation/domain/mapping.py says what each does to which clock)."""

SUBSCRIBES: dict[str, list[str]] = {
    "intake": [
        "RequestRegistered",
        "RequestAcknowledged",
        "RequestAnsweredAtDesk",
        "RequestReclassified",
        "RequestCancelled",
        "RequestClosed",
        "IncidentClustered",
    ],
    "dispatch": [
        "WorkOrderCreated",
        "WorkOrderAssigned",
        "TechnicianArrived",
        "WorkOrderPaused",
        "WorkOrderResumed",
        "WorkOrderResolved",
        "ResidentRejected",
        "ShiftHandoverPublished",
        "ShiftHandoverAcknowledged",
    ],
    "feedback": [
        "ReturnVisitDone",
        "FollowUpRaised",
        "ReplyLetterSent",
        "ReplyLetterConfirmed",
    ],
}
