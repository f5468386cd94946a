"""Support intake assistant: mail and chat intake, priority proposals, entitlement, confirmations."""
