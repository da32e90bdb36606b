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
        # Staff actions on a request (intake's staff routes): they start or stop the supervisor_answer and plan
        # clocks, and stop first_response and complaint_reply.
        "SupervisorCalledIn",
        "SupervisorAnswered",
        "RequestMarkedComplex",
        "PlanGiven",
        "FirstResponseGiven",
        "ComplaintReplied",
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
