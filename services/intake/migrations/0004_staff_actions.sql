-- Staff actions on a request whose facts start or stop escalation's clocks: supervisors called in (and their
-- answers), the complex-problem mark and its plan, the first response, the reply to a complaint.
-- Free text here is stored as published: phone numbers and the reporter's name masked.
ALTER TABLE requests
    ADD COLUMN supervisor_calls jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN marked_complex jsonb,
    ADD COLUMN plan jsonb,
    ADD COLUMN first_response jsonb,
    ADD COLUMN complaint_reply jsonb;
