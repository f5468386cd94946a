"""The staff pages: review queue, ticket detail, priority corrections, triage quality."""
