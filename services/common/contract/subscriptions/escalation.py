"""Events the escalation service consumes, by producer. Its queue `escalation.events` is bound to exactly these."""

SUBSCRIBES: dict[str, list[str]] = {
    "intake": [
        "RequestRegistered",
        "RequestAcknowledged",
        "RequestReclassified",
        "RequestCancelled",
        "RequestAnsweredAtDesk",
        "IncidentClustered",
    ],
    "dispatch": [
        "WorkOrderAssigned",
        "WorkOrderAccepted",
        "TechnicianArrived",
        "WorkOrderPaused",
        "WorkOrderResumed",
        "WorkOrderResolved",
        "WorkOrderClosed",
        "WorkOrderCancelled",
        "ShiftHandoverPublished",
        "ShiftHandoverAcknowledged",
        "WorkOrderCreated",
    ],
    "feedback": [
        "ReturnVisitDone",
        "ReturnVisitFailed",
        "FollowUpRaised",
        "ReplyLetterSent",
        "ReplyLetterConfirmed",
    ],
}
