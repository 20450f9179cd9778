"""The Access Request Service (ARAP): workflows, tasks, approvals."""
