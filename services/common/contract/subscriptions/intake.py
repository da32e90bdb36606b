"""Events the intake service consumes, by producer. Its queue `intake.events` is bound to exactly these."""

SUBSCRIBES: dict[str, list[str]] = {
    "dispatch": [
        "WorkOrderClosed",
    ],
}
